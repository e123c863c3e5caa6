"""Relaying a streamed body: one piece in flight, read from its source only once sent on.

Envoy bounds each connection's buffers with high and low watermarks: past the
high one it stops reading the other side until the buffer drains below the
low one. Here the buffer is a single piece (at most one 64 KiB read): the next
read from the source starts only when the client's socket has taken the last
piece, so `send`'s back-pressure is the watermark, and a slow reader slows
its upstream rather than growing the sidecar's memory. The piece in flight
counts in the process's buffer budget (`transport/budget.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sofamesh.codecs.http1 import BodyStream
from sofamesh.codecs.http1.writer import CHUNKED, LAST_CHUNK, NO_BODY, chunk
from sofamesh.transport.budget import Overload
from sofamesh.transport.errors import TransportError


class BodyTruncated(Exception):
    """The source of a streamed body failed after its head went out: the client's
    connection must close, so the client sees a cut body, never a wrong whole one."""


async def relay_body(
    body: BodyStream, framing: str, send: Callable[[bytes], Awaitable[None]], overload: Overload
) -> None:
    """Send `body`'s pieces with `send`, framed as `framing` (`writer.RAW` or `CHUNKED`).

    Raises BodyTruncated when `body` fails; the caller closes `body`.
    """
    if framing is NO_BODY:
        return
    while True:
        try:
            piece = await body.receive()
        except (TransportError, TimeoutError) as exc:
            raise BodyTruncated(f"the response body's source failed: {exc}") from exc
        if not piece:
            break
        if framing is CHUNKED:
            piece = chunk(piece)
        size = len(piece)
        overload.held += size
        try:
            await send(piece)
        finally:
            overload.held -= size
    if framing is CHUNKED:
        await send(LAST_CHUNK)
