"""Large HTTP bodies over HTTP/2 streams, streamed rather than buffered whole.

A response above the listener's `stream_threshold_bytes` goes to the client as it
arrives, as on HTTP/1.1 (`protocols/http/relay.py`): buffered whole, 40 streams of a
10 MiB response to a client that opens no window held 400 MiB until the send timeout.

- `UpstreamBody` reads a response body from an upstream HTTP/2 stream only as its reader
  asks. Each piece taken is acknowledged, which is what reopens the upstream's window,
  so what waits in the sidecar for a stalled client is at most the stream window we
  advertise upstream (`H2Limits.stream_window`), the watermark Envoy's flow control keeps.
- `send_streamed` sends a streamed body on a client's stream: one piece in flight, the
  next read only once the client's window took the last. The piece in flight counts in
  the buffer budget and in the stream's `held`.

A retry needs the whole response, so only a response whose body was not yet streamed can
be retried: the same rule as HTTP/1.1's.
"""

from __future__ import annotations

import anyio

from sofamesh.codecs.h2 import INTERNAL_ERROR, RawHeaders
from sofamesh.codecs.http1 import BodyStream
from sofamesh.protocols.h2.stream import H2Stream, StreamResetError
from sofamesh.transport.budget import OVERLOAD
from sofamesh.transport.errors import TransportError, UpstreamResetError

PIECE_TIMEOUT = 30.0  # seconds an upstream may take to send the next piece (as HTTP/1.1's)


class UpstreamBody:
    """A response body read from an upstream stream as its reader asks (a `BodyStream`).

    `prefix` holds the pieces already read before the body turned out large. Whatever
    ends the body (its end, an error, `aclose`) lets go of the stream, resetting it if the
    upstream has not finished.
    """

    __slots__ = ("_prefix", "_up", "length", "timeout")

    def __init__(self, up: H2Stream, prefix: list[bytes], length: int | None) -> None:
        self._up = up
        self._prefix = prefix
        self.length = length
        self.timeout = PIECE_TIMEOUT

    async def receive(self) -> bytes:
        if self._prefix:
            return self._prefix.pop(0)
        try:
            with anyio.fail_after(self.timeout):
                while (piece := await self._up.receive_data()) is not None:
                    if piece:  # a DATA frame of padding only carries nothing
                        return piece
        except StreamResetError as exc:
            await self.aclose()
            raise UpstreamResetError(f"the upstream reset the response body: {exc}") from exc
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        return b""

    async def aclose(self) -> None:
        self._prefix = []
        self._up.conn.finished(self._up)


def content_length(headers: RawHeaders) -> int | None:
    for k, v in headers:
        if k == b"content-length":
            return int(v) if v.isdigit() else None
    return None


async def send_streamed(stream: H2Stream, headers: RawHeaders, body: BodyStream) -> None:
    """Send `headers`, then `body` piece by piece; a body whose source fails resets the
    stream (INTERNAL_ERROR), so the client sees a cut response, never a wrong whole one."""
    if body.length is not None:
        headers.append((b"content-length", str(body.length).encode()))
    await stream.send_headers(headers)
    while True:
        try:
            piece = await body.receive()
        except (TransportError, TimeoutError):
            stream.reset(INTERNAL_ERROR)
            return
        size = len(piece)
        OVERLOAD.held += size  # the piece in flight counts until the client's window took it
        stream.held = size
        try:
            await stream.send_data(piece, end_stream=not piece)
        finally:
            OVERLOAD.held -= size
            stream.held = 0
        if not piece:
            return
