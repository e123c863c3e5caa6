"""Serve an ASGI app as the terminal of the inbound chain (the SDK provider).

A minimal, complete ASGI 3 `http` runner: the request body arrives in one
`http.request` message, the response is collected from `http.response.start`
and `http.response.body` messages. Lifespan is run by `AsgiLifespan` around
the provider's lifetime, so frameworks that need startup hooks (Starlette,
FastAPI, Quart) work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import anyio

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.http.mapping import error_response

log = logging.getLogger("sofamesh.asgi")
_OK, _APP_ERROR = Status.OK, Status.APP_ERROR  # read per call, once here

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiTerminal:
    """Calls `app` for each invocation whose payload is an `HttpRequest`."""

    def __init__(self, app: ASGIApp, server: tuple[str, int]) -> None:
        self._app = app
        self._server = server

    async def __call__(self, inv: Invocation) -> Result:
        req: HttpRequest = inv.payload
        scope = self._scope(req)
        body_sent = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        started = False

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                if req.stream is not None:  # a body above the listener's stream threshold
                    piece = await req.stream.receive()
                    if piece:
                        return {"type": "http.request", "body": piece, "more_body": True}
                body_sent = True
                return {"type": "http.request", "body": req.body, "more_body": False}
            await anyio.sleep_forever()  # no disconnect until the response is done
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            nonlocal status, headers, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await self._app(scope, receive, send)
        except Exception:
            log.exception("ASGI app raised while serving %s %s", req.method, req.target)
            if not started:
                resp = error_response(Status.APP_ERROR, f"{inv.service}: the application failed")
                return Result(status=Status.APP_ERROR, code=500, payload=resp)
        resp = HttpResponse(status=status, headers=headers, body=b"".join(chunks))
        # Positional, and the members through module names: a class called with keywords
        # packs them into a dict, and `Status.X` is `EnumType.__getattr__`'s slow path (3.11).
        # status, code, headers, payload
        return Result(_APP_ERROR if status >= 500 else _OK, status, None, resp)

    def _scope(self, req: HttpRequest) -> Scope:
        path, _, query = req.target.partition("?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": req.http_version,
            "method": req.method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": list(req.headers),
            "server": self._server,
            "client": None,
        }


@asynccontextmanager
async def asgi_lifespan(app: ASGIApp, timeout: float = 10.0) -> AsyncIterator[None]:
    """Run the ASGI lifespan protocol around a block: startup before, shutdown after.

    Apps without lifespan support (they raise on the scope, or return at once)
    are served all the same, as uvicorn's `lifespan="auto"` does.
    """
    to_app, app_inbox = anyio.create_memory_object_stream[Message](4)
    from_app, our_inbox = anyio.create_memory_object_stream[Message](4)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}

    async def run_app() -> None:
        try:
            await app(scope, app_inbox.receive, from_app.send)
        except Exception:
            log.debug("ASGI app does not support lifespan", exc_info=True)
        await from_app.send({"type": "lifespan.unsupported"})

    # Every stream is closed on the way out, whatever the app did.
    async with to_app, app_inbox, from_app, our_inbox, anyio.create_task_group() as tg:
        tg.start_soon(run_app)
        await to_app.send({"type": "lifespan.startup"})
        with anyio.fail_after(timeout):
            reply = await our_inbox.receive()
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"ASGI app failed to start: {reply.get('message', '')}")
        try:
            yield
        finally:
            if reply["type"] == "lifespan.startup.complete":
                with anyio.move_on_after(timeout, shield=True):
                    await to_app.send({"type": "lifespan.shutdown"})
                    await our_inbox.receive()
            tg.cancel_scope.cancel()
