"""Helpers for the HTTP/1.1 transport tests: a served handler on 127.0.0.1 and raw clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.protocols.http.server import ConnInfo, Http1Server


async def echo(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
    """Echoes the body; says which server connection carried the request."""
    return HttpResponse(200, [(b"x-conn", b"%d" % conn.id)], request.body)


def holding(
    target: str, entered: anyio.Event, release: anyio.Event | None = None
) -> Callable[[HttpRequest, ConnInfo], Awaitable[HttpResponse]]:
    """A handler that echoes, except that `target` signals `entered` and waits for `release`
    (forever if None)."""

    async def handle(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
        if request.target == target:
            entered.set()
            await (anyio.sleep_forever() if release is None else release.wait())
        return await echo(request, conn)

    return handle


@asynccontextmanager
async def serving(server: Http1Server) -> AsyncIterator[int]:
    """Run `server` on an ephemeral 127.0.0.1 port; cancel it on exit."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield port
        tg.cancel_scope.cancel()


@asynccontextmanager
async def raw_server(
    handle: Callable[[anyio.abc.SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    """A hand-written peer: `handle` gets each accepted connection."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port
        tg.cancel_scope.cancel()


async def read_until_eof(stream: anyio.abc.ByteReceiveStream) -> bytes:
    data = b""
    with anyio.fail_after(5):
        try:
            while True:
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


async def read_exactly(stream: anyio.abc.ByteReceiveStream, size: int) -> bytes:
    data = b""
    with anyio.fail_after(5):
        while len(data) < size:
            data += await stream.receive()
    assert len(data) == size, data
    return data


async def read_head(stream: anyio.abc.ByteReceiveStream) -> bytes:
    """Bytes up to and including the first blank line (no body may follow)."""
    data = b""
    with anyio.fail_after(5):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
    return data
