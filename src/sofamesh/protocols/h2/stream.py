"""One HTTP/2 stream as the application sees it: headers and body in, headers, body, trailers out.

`H2Connection` (`protocols/h2/conn.py`) owns the streams: its reader queues
body chunks here and wakes the waiting task; `receive_data` acknowledges
each chunk as it hands it out, which is what reopens the peer's window.
`send_data` sends what the peer's windows allow and waits for the rest.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from sofamesh.codecs.h2 import CANCEL, RawHeaders, StreamGone
from sofamesh.transport.workers import Signal, Waker

if TYPE_CHECKING:
    from sofamesh.protocols.h2.conn import H2Connection

HIGH_WATER = 256 * 1024  # unflushed bytes above which senders wait for the writer
CONNECTION_LOST = -1  # StreamResetError.error_code when the connection itself went away


class StreamResetError(Exception):
    """The stream ended abnormally: RST_STREAM (`error_code`), or the connection was lost.

    `refused`: the peer provably did not process the stream (REFUSED_STREAM,
    or above a GOAWAY's last stream id, RFC 9113 §8.7), so it is safe to retry.
    """

    def __init__(self, error_code: int, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.error_code = error_code
        self.refused = refused


class DeadlineExpired(StreamResetError):
    """The call's deadline passed while the stream was under way: it was reset (CANCEL)."""


class H2Stream:
    """One stream: headers and body in, headers, body and trailers out."""

    __slots__ = (
        "_window_wait",
        "cancel_handler",
        "chunks",
        "conn",
        "error",
        "headers",
        "held",
        "id",
        "local_closed",
        "on_reset",
        "recv_wait",
        "remote_closed",
        "trailers",
    )

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers: RawHeaders | None = None  # the request's (server) or response's (client)
        self.trailers: RawHeaders | None = None
        self.error: StreamResetError | None = None
        self.remote_closed = False
        self.local_closed = False
        # Called when the stream is reset or lost: a handler that wants to be cancelled
        # then (its upstream call ended) sets it to `cancel_handler`, which `H2Server` sets
        # while the handler runs (its worker's cancel scope: `CancellableWorkers`).
        self.on_reset: Callable[[], None] | None = None
        self.cancel_handler: Callable[[], None] | None = None
        self.chunks: deque[tuple[bytes, int]] = deque()
        self.held = 0  # bytes buffered for it, request body or response (overload's measure)
        # One task reads a stream and one writes it: one-waiter signals (`conn.signal`);
        # the reads, a few per call, await a bare `Waker` (`conn.waker`: on asyncio the
        # future itself). The connection's reader wakes `recv_wait` itself for a call's DATA
        # and trailers.
        self.recv_wait: Waker | None = None
        self._window_wait: Signal | None = None

    # -- receiving ----------------------------------------------------------------------

    async def receive_headers(self) -> RawHeaders:
        """The response headers (client side); waits until they arrive."""
        while self.headers is None:
            if self.error is not None:
                raise self.error
            self.recv_wait = waker = self.conn.waker()
            await waker
        return self.headers

    async def receive_data(self) -> bytes | None:
        """The next body chunk, or None once the peer ended the stream."""
        chunks = self.chunks
        while not chunks:
            if self.remote_closed:
                return None
            if self.error is not None:
                raise self.error
            self.recv_wait = waker = self.conn.waker()
            await waker
        data, flow = chunks.popleft()
        if flow:
            self.conn.ack(self.id, flow)
        return data

    def take_received(self) -> list[bytes]:
        """Every chunk received so far, acknowledged at once (one WINDOW_UPDATE, not one per
        chunk); the non-empty ones. For a stream the peer has ended, that is the whole rest."""
        chunks, self.chunks = self.chunks, deque()
        if len(chunks) == 1:  # a unary request's one message: no generators over one chunk
            data, flow = chunks[0]
            taken = [data] if data else []
        else:
            flow = sum(f for _, f in chunks)
            taken = [data for data, _ in chunks if data]
        if flow:
            self.conn.ack(self.id, flow)
        return taken

    def _raise_if_reset(self) -> None:
        if self.error is not None:
            raise self.error

    # -- sending ------------------------------------------------------------------------

    async def send_headers(self, headers: RawHeaders, end_stream: bool = False) -> None:
        if self.error is not None:
            raise self.error
        try:
            self.conn.codec.send_headers(self.id, headers, end_stream)
        except StreamGone as exc:
            raise self.error or StreamResetError(CANCEL, str(exc)) from exc
        self.conn.flush_soon()
        if end_stream:
            self._local_end()

    async def send_data(self, data: bytes | memoryview, end_stream: bool = False) -> None:
        """Send all of `data`, waiting for flow-control window and writer drain as needed."""
        conn = self.conn
        view = memoryview(data) if len(data) > conn.codec.limits.max_frame_size else data
        deadline, updates = math.inf, 0  # while the peer's window is shut: when to give up
        while True:
            if self.error is not None:
                raise self.error
            try:
                sent = conn.codec.send_data(self.id, view, end_stream)
            except StreamGone as exc:
                raise self.error or StreamResetError(CANCEL, str(exc)) from exc
            conn.flush_soon(sent)
            if sent == len(view):
                break
            view = view[sent:]
            if sent or deadline == math.inf:  # progress: the send timeout starts again
                deadline, updates = conn.send_deadline(), conn.window_updates
            await self._wait_window(deadline, updates)
        if end_stream:
            self._local_end()
        if conn.unflushed > HIGH_WATER:
            await conn.wait_drained()

    def send_trailers(self, headers: RawHeaders) -> Coroutine[Any, Any, None]:
        return self.send_headers(headers, end_stream=True)  # no frame of its own

    def _local_end(self) -> None:
        self.local_closed = True
        if self.remote_closed:
            self.conn.forget(self.id)

    async def _wait_window(self, deadline: float, updates: int) -> None:
        """Wait for window; past `deadline` (the send timeout) the stream is reset."""
        ev = self._window_wait = self.conn.signal()
        with anyio.CancelScope(deadline=deadline):
            await ev.wait()
            return
        self.conn.send_stalled(self, progress=self.conn.window_updates != updates)
        self._raise_if_reset()

    def reset(self, error_code: int = CANCEL, error: StreamResetError | None = None) -> None:
        """Abandon the stream (RST_STREAM), waking anyone waiting on it (with `error`)."""
        if self.error is None:
            self.conn.codec.reset(self.id, error_code)
            self.conn.flush_soon()
            self.fail(error or StreamResetError(error_code, "reset locally"))
        self.conn.forget(self.id)

    def cancel(self) -> None:
        """A `DeadlineWatch`'s call (`deadlines.Cancellable`): the call's deadline passed.
        The stream is reset (CANCEL) and every wait on it ends in `DeadlineExpired`, unless
        the peer's side has ended: then the whole answer is here and wins, as it would over
        a cancel scope's (anyio delivers no cancellation to a task whose wait is over)."""
        if not self.remote_closed:
            self.reset(CANCEL, DeadlineExpired(CANCEL, "the call's deadline passed"))

    # -- called by the connection -------------------------------------------------------

    def wake(self) -> None:
        waker = self.recv_wait
        if waker is not None:
            self.recv_wait = None
            if not waker.done():  # done: its wait was cancelled
                waker.set_result(None)

    def wake_window(self) -> None:
        ev = self._window_wait
        if ev is not None:
            self._window_wait = None
            ev.set()

    def fail(self, error: StreamResetError) -> None:
        if self.error is None:
            self.error = error
            # A response that ended before a RST_STREAM(NO_ERROR) stays readable (RFC 9113
            # §8.1: the server needs no more of the request); other unread data is dropped
            # and its flow-control credit returned to the connection.
            if not (self.remote_closed and error.error_code == 0):
                chunks, self.chunks = self.chunks, deque()
                for _data, flow in chunks:
                    if flow and error.error_code != CONNECTION_LOST:
                        self.conn.codec.ack(self.id, flow)
        self.wake()
        self.wake_window()
        if self.on_reset is not None:
            self.on_reset()

    @property
    def done(self) -> bool:
        return self.error is not None or (self.remote_closed and self.local_closed)
