"""A streamed call as the chain carries it: a request body to read, a response to write.

HTTP/1.1 calls travel buffered; gRPC (and any HTTP/2 stream) cannot: a
bidirectional stream may last for hours. A `StreamCall` rides in
`Invocation.payload` instead of a buffered message, and the chain still sees
one Invocation -> Result per call: the terminal relays the whole exchange,
body chunks both ways, and returns once the response has ended, so the
`Result` carries the real outcome (grpc-status) for retries, breakers and
outlier ejection, and the `TimeoutFilter` deadline covers the call's life.

- `body` (a `ReplayableBody`) reads the caller's request chunks, keeping the
  first `replay_limit` bytes so that a retry can send them again (Envoy's
  request buffering for retries). Past the limit, a retry is impossible and
  the attempt reports the previous outcome. The kept bytes count against the
  buffer budget (`transport/budget.py`) while kept: once the caller saw a
  response (`forget`: no attempt can follow) the chunks already sent go, and
  the rest when the call ends (`close`), so a long stream does not pin its
  first megabyte for its whole life.
- `sink` (a `ResponseSink`) takes the response headers and body; once it has
  sent anything downstream it is `committed`, and no further attempt may
  start (the caller already saw a response).
- Trailers are not written by the terminal: they come back in the `Result`,
  and the listener that received the call writes them (or a mesh-made
  status in their place) when the chain returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

import anyio
import attrs

from sofamesh.codecs.h2 import RawHeaders
from sofamesh.protocols.h2.stream import H2Stream
from sofamesh.transport.budget import OVERLOAD

REPLAY_LIMIT = 1024 * 1024  # Envoy's default per-request buffer limit


class BodySource(Protocol):
    @property
    def ended(self) -> bool:
        """Every chunk has arrived: reading will not wait."""
        ...

    async def receive(self) -> bytes | None:
        """The next chunk of the request body, None at its end."""
        ...

    def take_ended(self) -> list[bytes]:
        """Once `ended`: every chunk not yet received, without waiting (a unary call's
        request usually arrives whole, and this spares an await per chunk)."""
        ...


class ResponseSink(Protocol):
    committed: bool

    async def send_headers(self, headers: RawHeaders) -> None: ...

    async def send_data(self, data: bytes) -> None: ...


class NotReplayable(Exception):
    """A retry needs request bytes that were already forwarded and not kept."""


class ReplayableBody:
    """Reads a `BodySource` once, and lets each new attempt start from the beginning."""

    __slots__ = (
        "_attempts", "_current", "_ended", "_kept", "_kept_bytes", "_limit", "_source",
        "overflowed",
    )  # fmt: skip

    def __init__(self, source: BodySource, replay_limit: int = REPLAY_LIMIT) -> None:
        self._source = source
        self._limit = replay_limit
        self._kept: list[bytes] = []
        self._kept_bytes = 0  # what `_kept` holds, counted in the buffer budget
        self._ended = False
        self._attempts = 0
        self._current: BodyReader | None = None
        self.overflowed = False

    def reader(self) -> BodyReader:
        """A reader for one attempt; `NotReplayable` if an earlier one consumed unkept bytes."""
        self._attempts += 1
        if self._attempts > 1 and self.overflowed:
            raise NotReplayable("the request body was larger than the retry buffer")
        self._current = BodyReader(self)
        return self._current

    def forget(self) -> None:
        """No attempt can follow (the caller saw a response): keep nothing more, and let
        go of the kept chunks the current attempt has already sent."""
        self.overflowed = True
        reader = self._current
        sent = len(self._kept) if reader is None else reader._pos
        if sent:
            gone = sum(map(len, self._kept[:sent]))
            del self._kept[:sent]
            self._kept_bytes -= gone
            OVERLOAD.held -= gone
            if reader is not None:
                reader._pos = 0

    def close(self) -> None:
        """The call ended: the kept chunks leave the budget."""
        self.overflowed = True
        self._kept.clear()
        OVERLOAD.held -= self._kept_bytes
        self._kept_bytes = 0

    def _keep(self, chunk: bytes) -> None:
        size = len(chunk)
        if self._kept_bytes + size > self._limit:
            self.overflowed = True
            self._kept.clear()
            OVERLOAD.held -= self._kept_bytes
            self._kept_bytes = 0
        else:
            self._kept.append(chunk)
            self._kept_bytes += size
            OVERLOAD.held += size

    async def _pull(self) -> bytes | None:
        if self._ended:
            return None
        chunk = await self._source.receive()
        if chunk is None:
            self._ended = True
            return None
        if not self.overflowed:
            self._keep(chunk)
        return chunk

    def _take_ended(self) -> list[bytes]:
        chunks = [] if self._ended else self._source.take_ended()
        self._ended = True
        for chunk in chunks:
            if self.overflowed:
                break
            self._keep(chunk)
        return chunks

    @property
    def ended(self) -> bool:
        """Reading the rest will not wait (the caller ended its side)."""
        return self._ended or self._source.ended


class BodyReader:
    """One attempt's view of the body: the kept chunks, then fresh ones from the source."""

    __slots__ = ("_body", "_pos")

    @property
    def ended(self) -> bool:
        body = self._body  # `ReplayableBody.ended` inline
        return body._ended or body._source.ended

    def __init__(self, body: ReplayableBody) -> None:
        self._body = body
        self._pos = 0

    async def receive(self) -> bytes | None:
        body = self._body
        if self._pos < len(body._kept):
            self._pos += 1
            return body._kept[self._pos - 1]
        chunk = await body._pull()
        if chunk is not None and not body.overflowed:
            self._pos += 1
        return chunk

    def take_ended(self) -> list[bytes]:
        """Once `ended`: the rest of the body at once (`BodySource.take_ended`)."""
        body = self._body
        kept = body._kept[self._pos :]
        fresh = body._take_ended()
        self._pos = len(body._kept)
        return kept + fresh if kept else fresh


@attrs.define(eq=False)
class StreamCall:
    """`Invocation.payload` of a streamed call (see the module docstring)."""

    path: str
    authority: str
    body: ReplayableBody
    sink: ResponseSink
    last_result: Any = None  # the Result of the latest attempt (what a retry after commit gets)


@attrs.define(eq=False)
class StreamReply:
    """`Result.payload` of a relayed call: the provider's headers and trailers as received.

    `trailers_only`: the provider answered with one header block that ended
    the stream (gRPC's Trailers-Only), which is then in `headers`.
    """

    headers: RawHeaders
    trailers: RawHeaders
    trailers_only: bool = False


# -- adapters between an HTTP/2 stream and a call ---------------------------------------


class H2StreamSource:
    """The request body of a received HTTP/2 stream."""

    __slots__ = ("_stream",)

    def __init__(self, stream: H2Stream) -> None:
        self._stream = stream

    @property
    def ended(self) -> bool:
        return self._stream.remote_closed

    def receive(self) -> Coroutine[Any, Any, bytes | None]:
        return self._stream.receive_data()  # the stream's coroutine: no frame of its own

    def take_ended(self) -> list[bytes]:
        return self._stream.take_received()


class H2StreamSink:
    """The response side of a received HTTP/2 stream."""

    __slots__ = ("_stream", "committed")

    def __init__(self, stream: H2Stream) -> None:
        self._stream = stream
        self.committed = False

    # The stream's coroutines, returned: no frame of their own around each send.
    def send_headers(self, headers: RawHeaders) -> Coroutine[Any, Any, None]:
        self.committed = True
        return self._stream.send_headers(headers)

    def send_data(self, data: bytes) -> Coroutine[Any, Any, None]:
        return self._stream.send_data(data)


# -- in-memory ends, for calls that start or end in this process (the SDK) --------------

QUEUE_LIMIT = 1024 * 1024  # bytes a queue holds before its writer waits (backpressure)


class _Waiter:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def wake(self) -> None:
        ev, self._event = self._event, None
        if ev is not None:
            ev.set()


class QueueSource:
    """A request body the application writes (`send`, `end`) and the relay reads."""

    __slots__ = ("_chunks", "_ended", "_queued", "_readable", "_writable", "error")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._ended = False
        self._readable = _Waiter()
        self._writable = _Waiter()
        self.error: BaseException | None = None

    @property
    def ended(self) -> bool:
        return self._ended

    async def send(self, chunk: bytes) -> None:
        while self._queued > QUEUE_LIMIT and self.error is None:
            await self._writable.wait()
        if self.error is not None:
            raise self.error
        self._chunks.append(chunk)
        self._queued += len(chunk)
        self._readable.wake()

    def end(self) -> None:
        self._ended = True
        self._readable.wake()

    def fail(self, error: BaseException) -> None:
        """The call is over: wake a writer blocked on a full queue with `error`."""
        self.error = error
        self._writable.wake()

    async def receive(self) -> bytes | None:
        while not self._chunks:
            if self._ended:
                return None
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._queued -= len(chunk)
        self._writable.wake()
        return chunk

    def take_ended(self) -> list[bytes]:
        chunks, self._chunks = list(self._chunks), deque()
        self._queued = 0
        self._writable.wake()
        return chunks


class QueueSink:
    """A response the relay writes and the application reads (`wait_headers`, `receive`)."""

    __slots__ = ("_chunks", "_closed", "_queued", "_readable", "_writable", "committed", "headers")

    def __init__(self) -> None:
        self.headers: RawHeaders | None = None
        self.committed = False
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._closed = False
        self._readable = _Waiter()
        self._writable = _Waiter()

    async def send_headers(self, headers: RawHeaders) -> None:
        self.headers = headers
        self.committed = True
        self._readable.wake()

    async def send_data(self, data: bytes) -> None:
        while self._queued > QUEUE_LIMIT and not self._closed:
            await self._writable.wait()
        self._chunks.append(data)
        self._queued += len(data)
        self._readable.wake()

    def close(self) -> None:
        """No more headers or data will come (the call ended, one way or another)."""
        self._closed = True
        self._readable.wake()
        self._writable.wake()

    async def wait_headers(self) -> RawHeaders | None:
        """The response headers, or None if the call ended without any."""
        while self.headers is None and not self._closed:
            await self._readable.wait()
        return self.headers

    async def receive(self) -> bytes | None:
        """The next body chunk, None once the call ended."""
        while not self._chunks:
            if self._closed:
                return None
            await self._readable.wait()
        chunk = self._chunks.popleft()
        self._queued -= len(chunk)
        self._writable.wake()
        return chunk
