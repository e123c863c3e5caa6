"""`sofamesh injector` (or `python -m sofamesh.deploy.webhook`): the mutating admission webhook.

HTTPS on the project's HTTP/1.1 server, TLS from the stdlib `ssl` through
anyio. Routes: `POST /inject` (an AdmissionReview in, the answer of
`review.answer` out) and `GET /healthz` (200 while serving). Bodies above
`max_body_bytes` get 413, JSON nested deeper than `max_json_depth` 400, other
paths 404, other methods 405.

The certificate and key are files (a Kubernetes Secret's mount): before each
handshake their size and modification time are looked at, and when either
changed the pair is loaded into a new context, so a renewed Secret is used
without a restart. A pair that does not load (half written) is logged and the
last good one kept. Prints `SOFAMESH INJECTOR READY {"listen": "HOST:PORT"}`
once serving; exits 0 after SIGTERM, 1 when the certificate cannot be loaded at
start or the port is taken.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs

from sofamesh.codecs.http1 import Http1Limits, HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.deploy.manifests import add_settings_flags, settings_from
from sofamesh.deploy.review import MAX_DEPTH, answer
from sofamesh.deploy.settings import InjectSettings
from sofamesh.protocols.http.server import ConnInfo, Http1Server
from sofamesh.transport.net import format_address
from sofamesh.transport.tls import REFUSED, handshake, refusal_reason

log = logging.getLogger("sofamesh.injector")

HANDSHAKE_TIMEOUT = 10.0
MAX_BODY_BYTES = 2 * 1024 * 1024  # the API server's own request limit is 3 MiB
_JSON = [(b"content-type", b"application/json")]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen(kw_only=True)
class InjectorConfig:
    listen: Address
    cert: Path
    key: Path
    settings: InjectSettings = attrs.field(factory=InjectSettings)
    max_body_bytes: int = MAX_BODY_BYTES
    max_json_depth: int = MAX_DEPTH
    max_connections: int = 1000


class CertFiles:
    """A server TLS context from a certificate and key file, reloaded when they change."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._stamp = self._look()
        self.context = self._load()  # raises at start: nothing to fall back on

    def refresh(self) -> None:
        stamp = self._look()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.context = self._load()
        except (OSError, ssl.SSLError) as exc:
            log.warning("injector: kept the last certificate: %s does not load: %s", self.cert, exc)
        else:
            log.info("injector: loaded the new certificate %s", self.cert)

    def _look(self) -> tuple[tuple[int, int], ...]:
        try:
            return tuple((s.st_mtime_ns, s.st_size) for s in (self.cert.stat(), self.key.stat()))
        except OSError:
            return ()

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


class TlsOnFiles(anyio.abc.Listener[anyio.abc.ByteStream]):
    """Connections of `inner`, each secured with the certificate files' current context."""

    def __init__(self, inner: anyio.abc.Listener[Any], certs: CertFiles) -> None:
        self.inner, self.certs = inner, certs

    async def serve(
        self,
        handler: Callable[[anyio.abc.ByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        async def secure_then(stream: anyio.abc.ByteStream) -> None:
            self.certs.refresh()
            peer = format_address(stream.extra(anyio.abc.SocketAttribute.remote_address, None))
            with anyio.move_on_after(HANDSHAKE_TIMEOUT) as scope:
                try:
                    tls = await handshake(stream, self.certs.context, server_side=True)
                except REFUSED as exc:
                    reason = refusal_reason(exc)
                    log.warning("injector: TLS handshake with %s failed: %s", peer, reason)
                    await anyio.aclose_forcefully(stream)
                    return
            if scope.cancelled_caught:
                log.warning("injector: %s finished no handshake in %gs", peer, HANDSHAKE_TIMEOUT)
                await anyio.aclose_forcefully(stream)
                return
            await handler(tls)

        await self.inner.serve(secure_then, task_group)

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


class Injector:
    """The webhook: routes, the server, and its run until `stop()`."""

    def __init__(
        self, config: InjectorConfig, *, now: Callable[[], datetime.datetime] = _utcnow
    ) -> None:
        self.config = config
        self.now = now
        self.certs = CertFiles(config.cert, config.key)
        self.bound: Address | None = None
        self._stop = anyio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def __call__(self, request: HttpRequest, _info: ConnInfo) -> HttpResponse:
        path = request.target.split("?")[0]
        routes = {"/inject": "POST", "/healthz": "GET"}
        if path not in routes:
            return HttpResponse(404, _JSON, b'{"error": "not found"}')
        if request.method != routes[path]:
            allow = routes[path].encode()
            return HttpResponse(405, [*_JSON, (b"allow", allow)], b'{"error": "method"}')
        if path == "/healthz":
            return HttpResponse(200, _JSON, b'{"ok": true}')
        cfg = self.config
        status, body = answer(request.body, cfg.settings, self.now(), cfg.max_json_depth)
        return HttpResponse(status, _JSON, json.dumps(body).encode())

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Injector] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        server = Http1Server(
            self,
            Http1Limits(max_body_size=self.config.max_body_bytes),
            max_connections=self.config.max_connections,
        )
        listen = self.config.listen
        tcp = await anyio.create_tcp_listener(local_host=listen.host, local_port=listen.port)
        self.bound = Address(listen.host, tcp.extra(anyio.abc.SocketAttribute.local_port))
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve, TlsOnFiles(tcp, self.certs))
            log.info("injector serving on https://%s", self.bound)
            task_status.started(self)
            await self._stop.wait()
            with anyio.move_on_after(5):
                await server.drain()
            tg.cancel_scope.cancel()


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("injector", help="the Kubernetes mutating admission webhook (TLS)")
    add_arguments(p)
    p.set_defaults(run=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="0.0.0.0:9443", help="host:port (default 0.0.0.0:9443)")
    p.add_argument("--cert", required=True, help="the server certificate (PEM, chain first)")
    p.add_argument("--key", required=True, help="its private key (PEM)")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    p.add_argument("--max-json-depth", type=int, default=MAX_DEPTH, help="deeper bodies get 400")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    add_settings_flags(p)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = InjectorConfig(
            listen=Address.parse(args.listen),
            cert=Path(args.cert),
            key=Path(args.key),
            settings=settings_from(args),
            max_body_bytes=args.max_body_bytes,
            max_json_depth=args.max_json_depth,
        )
        injector = Injector(config)
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"sofamesh injector: {exc}", file=sys.stderr)
        return 1
    try:
        anyio.run(_serve, injector, backend=args.backend)
    except OSError as exc:
        print(f"sofamesh injector: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(injector: Injector) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(injector.run)
        print("SOFAMESH INJECTOR READY " + json.dumps({"listen": str(injector.bound)}), flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s: stopping", signal.Signals(signum).name)
                injector.stop()
                return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sofamesh.deploy.webhook", description=__doc__.split("\n")[0]
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
