"""Apps for the demo and the end-to-end tests: `python -m sofamesh.demo.apps ROLE ...`.

Every role prints one `READY <json>` line on stdout once it serves, then runs
until SIGTERM (or is killed). Each provider answers with its instance name, so
callers can tell which one served them.

- `plain`: an HTTP app that knows nothing of the mesh (standard library only),
  meant to sit behind a sidecar.
- `sdk-provider`: an ASGI app served by the SDK; with `--calls SERVICE` it also
  calls that service through the mesh on every request (a provider that is a
  consumer too).
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _reply(instance: str, path: str, caller: str | None, body: bytes, **extra: Any) -> bytes:
    data = {"instance": instance, "path": path, "caller": caller, "echo": body.decode("latin-1")}
    return json.dumps({**data, **extra}).encode()


def plain_app(instance: str, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            data = _reply(instance, self.path, self.headers.get("x-sofamesh-caller"), body)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("READY " + json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


def make_asgi(
    instance: str, mesh: Any = None, calls: str = ""
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        body = (await receive()).get("body", b"")
        headers = dict(scope["headers"])
        if scope["path"].startswith("/fail"):  # a provider error, for governance tests
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": instance.encode()})
            return
        extra: dict[str, Any] = {}
        if calls and mesh is not None:
            resp = await mesh.request(calls, "GET", scope["path"])
            extra["downstream"] = json.loads(resp.body) if resp.status == 200 else resp.status
        caller = headers.get(b"x-sofamesh-caller", b"").decode() or None
        data = _reply(instance, scope["path"], caller, body, **extra)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app


async def sdk_provider(args: argparse.Namespace) -> None:
    import sofamesh

    config: dict[str, Any] = {"app": args.app, "mode": args.mode, "registry": args.registry}
    if args.sidecar:
        config["sidecar"] = args.sidecar
    if args.ejection_time:
        config["policy"] = {"outlier": {"base_ejection_time": args.ejection_time}}
    if args.version:
        config["metadata"] = {"version": args.version}
    async with sofamesh.open_mesh(config, env={}) as mesh:
        app = make_asgi(args.instance, mesh, args.calls)
        async with mesh.serve_asgi(app, services=[args.service]) as provider:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                print("READY " + json.dumps({"port": provider.address.port}), flush=True)
                async for _ in signals:
                    return


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sofamesh.demo.apps")
    p.add_argument("role", choices=["plain", "sdk-provider"])
    p.add_argument("--instance", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--service", default="")
    p.add_argument("--calls", default="", help="a service to call on every request")
    p.add_argument("--app", default="provider")
    p.add_argument("--mode", default="sdk")
    p.add_argument("--registry", default="memory://")
    p.add_argument("--sidecar", default="")
    p.add_argument("--ejection-time", type=float, default=0.0)
    p.add_argument("--version", default="", help="published as the endpoints' version")
    p.add_argument("--backend", default="asyncio")
    args = p.parse_args(argv)
    if args.role == "plain":
        plain_app(args.instance, args.port)
    else:
        anyio.run(sdk_provider, args, backend=args.backend)


if __name__ == "__main__":
    main()
