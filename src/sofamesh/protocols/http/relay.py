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

from sofamesh.codecs.http1 import BodyStream, Http1ServerCodec, HttpProtocolError
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


class UploadBody:
    """A request body read from the client only as the upstream takes it (a `BodyStream`).

    `read` is one read of the client's connection (under the server's body
    timeout); `receive` raises BodyTruncated when the client closes mid-body
    or breaks the framing. Read once: `started` tells a retry it cannot resend.
    """

    __slots__ = ("_codec", "_done", "_read", "length", "started")

    def __init__(self, codec: Http1ServerCodec, read: Callable[[], Awaitable[bytes]]) -> None:
        self._codec = codec
        self._read = read
        self._done = False
        self.started = False
        self.length = codec.stream_length

    async def receive(self) -> bytes:
        if self._done:
            return b""
        self.started = True
        data: bytes | None = None
        while True:
            try:
                piece, ended = self._codec.body_data(data)
            except HttpProtocolError as exc:
                self._done = True
                raise BodyTruncated(f"the request body was cut: {exc.reason}") from None
            self._done = ended
            if piece or ended:
                return piece
            data = await self._read()

    async def aclose(self) -> None:
        # What is left unread stays in the client's connection, which closes after the response.
        self._done = True
