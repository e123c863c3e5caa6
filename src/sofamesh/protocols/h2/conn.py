"""One HTTP/2 connection on anyio, for either role: a reader, a writer, and its streams.

Theory of operation. The *reader* task feeds received bytes to the sans-IO
`H2Codec` and dispatches the events to `H2Stream` objects without ever
awaiting per frame: body chunks are queued on their stream and waiting tasks
woken. The *writer* task owns the socket's send side; anyone who made the
codec produce bytes calls `flush_soon()`, and the writer sends everything
pending in one write, so many streams' frames share a system call.

Flow control is end to end: received DATA is acknowledged only when the
application takes it from the stream (`receive_data`), so a consumer that
reads slowly stalls its peer's window, not our memory. Sending waits for the
peer's window (`WindowOpened`) and for the writer to drain past a high-water
mark, so a slow socket stalls the producer, not our memory either.

A stream reset by the peer (or lost with the connection) wakes its waiters
with `StreamResetError`; the application resets a stream with `reset()`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio
import anyio.abc

from sofamesh.codecs.h2 import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    DataReceived,
    Event,
    GoAway,
    H2Codec,
    H2ConnectionError,
    HeadersReceived,
    SettingsChanged,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from sofamesh.protocols.h2.stream import (
    CONNECTION_LOST,
    H2Stream,
    StreamResetError,
)
from sofamesh.transport.budget import OVERLOAD, Holding
from sofamesh.transport.net import STREAM_ERRORS
from sofamesh.transport.workers import Signal, event_class, waker_class

log = logging.getLogger("sofamesh.h2")

READ_SIZE = 256 * 1024


NewStream = Callable[[H2Stream], Awaitable[None]]


class H2Connection:
    """The reader and writer of one connection; `run` returns when it has closed."""

    def __init__(
        self,
        sock: anyio.abc.ByteStream,
        codec: H2Codec,
        *,
        on_stream: Callable[[H2Stream], None] | None = None,
        peer: str = "?",
        idle_timeout: float | None = None,
        send_timeout: float | None = None,
    ) -> None:
        self.sock = sock
        self.codec = codec
        self.peer = peer
        self.identity = ""  # a server connection's peer, verified by mutual TLS (a SPIFFE ID)
        self.streams: dict[int, H2Stream] = {}
        self.unflushed = 0
        self.closed = False
        self.goaway_received: GoAway | None = None
        self.on_goaway: Callable[[], None] | None = None
        self._on_stream = on_stream
        self._idle_timeout = idle_timeout
        self._send_timeout = send_timeout  # a stream's wait for the peer's window (server)
        self.window_updates = 0  # WINDOW_UPDATE frames received: the peer's reading progress
        # One-waiter signals (a bare future on asyncio) for the writer's and each stream's
        # wake-ups: a few per call, where `anyio.Event` looks the backend up every time.
        self.signal = event_class()
        self.waker = waker_class()  # a stream's read: a bare future on asyncio
        self._flush: Signal = self.signal()
        self._flush_due = False  # `_flush` is set: flush_soon need not set it again
        self._drained: anyio.Event | None = None
        self._writer_done = anyio.Event()
        self._stop_writer = False
        self.draining = False
        self._read_scope: anyio.CancelScope | None = None
        self.on_stream_closed: Callable[[], None] | None = None
        self.opened = time.monotonic()
        codec.initiate()  # before any stream: the preface and SETTINGS go first

    # -- running ------------------------------------------------------------------------

    async def run(self, initial: bytes = b"") -> None:
        """Serve the connection until either side ends it; always closes the socket."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer)
                self.flush_soon()
                try:
                    await self._reader(initial)
                finally:
                    self._stop_writer = True
                    self._flush.set()
                    with anyio.move_on_after(2, shield=True):
                        await self._writer_done.wait()
                    tg.cancel_scope.cancel()
        finally:
            self._lost("connection closed")
            await anyio.aclose_forcefully(self.sock)

    async def _reader(self, initial: bytes) -> None:
        data = initial
        while True:
            if data:
                try:
                    events = self.codec.receive_data(data)
                except H2ConnectionError as exc:
                    log.warning("h2 %s broke the protocol: %s", self.peer, exc.reason)
                    self.flush_soon()
                    return
                self._dispatch(events)
                self.flush_soon()
            if self.closed or (self._ending and not self.streams):
                return
            received = await self._receive()
            if received is None:
                return
            data = received

    @property
    def _ending(self) -> bool:
        return self.draining or self.goaway_received is not None

    async def _receive(self) -> bytes | None:
        timeout = self._idle_timeout if not self.streams else None
        with anyio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            self._read_scope = scope
            try:
                return await self.sock.receive(READ_SIZE)
            except anyio.EndOfStream:
                return None
            except STREAM_ERRORS as exc:
                log.debug("h2 connection to %s lost: %r", self.peer, exc)
                return None
            finally:
                self._read_scope = None
        if not self._ending:
            self.codec.close()  # idle: say goodbye properly
        return None

    async def _writer(self) -> None:
        try:
            while True:
                await self._flush.wait()
                self._flush = self.signal()
                self._flush_due = False
                data = self.codec.data_to_send()
                self.unflushed = 0
                if data:
                    await self.sock.send(data)
                drained = self._drained
                if drained is not None:
                    self._drained = None
                    drained.set()
                if self._stop_writer:
                    return
        except STREAM_ERRORS as exc:
            log.debug("h2 write to %s failed: %r", self.peer, exc)
            self.closed = True
        finally:
            self._writer_done.set()
            if self._drained is not None:
                self._drained.set()

    def flush_soon(self, nbytes: int = 0) -> None:
        self.unflushed += nbytes
        if not self._flush_due:  # a call sets it several times before the writer runs
            self._flush_due = True
            self._flush.set()

    async def wait_drained(self) -> None:
        if self._writer_done.is_set():
            return
        if self._drained is None:
            self._drained = anyio.Event()
        await self._drained.wait()

    # -- events -------------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        streams = self.streams
        for ev in events:
            t = type(ev)
            if t is DataReceived:
                assert isinstance(ev, DataReceived)
                s = streams.get(ev.stream_id)
                if s is None:  # already abandoned: give the window back
                    self.codec.ack(ev.stream_id, ev.flow_length)
                    continue
                if ev.data or ev.flow_length:
                    s.chunks.append((ev.data, ev.flow_length))
                if ev.end_stream:  # `_remote_end` and `s.wake` inline, as below: once a call each
                    s.remote_closed = True
                    if s.local_closed:
                        self.forget(s.id)
                if (waiter := s.recv_wait) is not None:
                    s.recv_wait = None
                    if not waiter.done():  # done: its wait was cancelled
                        waiter.set_result(None)
            elif t is HeadersReceived:
                assert isinstance(ev, HeadersReceived)
                self._on_headers(ev)
            elif t is TrailersReceived:
                assert isinstance(ev, TrailersReceived)
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.trailers = ev.headers
                    s.remote_closed = True
                    if s.local_closed:
                        self.forget(s.id)
                    if (waiter := s.recv_wait) is not None:
                        s.recv_wait = None
                        if not waiter.done():
                            waiter.set_result(None)
            elif t is WindowOpened:
                assert isinstance(ev, WindowOpened)
                self._window_opened(ev.stream_id)
            elif t is StreamReset:
                assert isinstance(ev, StreamReset)
                self._on_reset(ev)
            else:
                self._on_rare(ev)

    def _on_headers(self, ev: HeadersReceived) -> None:
        s = self.streams.get(ev.stream_id)
        if s is None:
            if self.codec.client_side or self._on_stream is None:
                return
            s = H2Stream(self, ev.stream_id)
            self.streams[ev.stream_id] = s
            s.headers = ev.headers
            if ev.end_stream:
                s.remote_closed = True
            self._on_stream(s)
            return
        s.headers = ev.headers
        if ev.end_stream:
            self._remote_end(s)
        s.wake()

    def _remote_end(self, s: H2Stream) -> None:
        s.remote_closed = True
        if s.local_closed:
            self.forget(s.id)

    def _window_opened(self, stream_id: int) -> None:
        self.window_updates += 1
        if stream_id:
            s = self.streams.get(stream_id)
            if s is not None:
                s.wake_window()
            return
        for s in self.streams.values():
            s.wake_window()

    def _on_reset(self, ev: StreamReset) -> None:
        s = self.streams.pop(ev.stream_id, None)
        if s is not None:
            refused = ev.error_code == 0x7  # REFUSED_STREAM
            who = "by the peer" if ev.remote else "here: the peer's frames were malformed"
            reason = f"stream reset {who} (error code {ev.error_code})"
            s.fail(StreamResetError(ev.error_code, reason, refused=refused))

    def _on_rare(self, ev: Event) -> None:
        if isinstance(ev, GoAway):
            self.goaway_received = ev
            for sid, s in list(self.streams.items()):
                if self.codec.client_side and sid > ev.last_stream_id:
                    self.streams.pop(sid, None)
                    s.fail(StreamResetError(ev.error_code, "refused by GOAWAY", refused=True))
            if self.on_goaway is not None:
                self.on_goaway()
        elif isinstance(ev, SettingsChanged):
            pass  # the pool reads `codec.remote_max_streams` when it picks a connection

    # -- for streams and owners ---------------------------------------------------------

    def ack(self, stream_id: int, flow_length: int) -> None:
        self.codec.ack(stream_id, flow_length)
        self.flush_soon()

    def forget(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is not None and self.on_stream_closed is not None:
            self.on_stream_closed()
        if not self.streams and self._ending and self._read_scope is not None:
            self._read_scope.cancel()  # the last stream of a closing connection ended

    def finished(self, stream: H2Stream) -> None:
        """The application is done with `stream`: reset it if it is still half-open."""
        if not stream.done:
            stream.reset(CANCEL)  # which forgets it
        elif stream.id in self.streams:  # an ended stream was forgotten as it ended
            self.forget(stream.id)

    def open_stream(self) -> H2Stream:
        """A new client stream (its id is reserved; send headers on it next)."""
        sid = self.codec.next_stream_id()
        s = H2Stream(self, sid)
        self.streams[sid] = s
        return s

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Queue a GOAWAY; the connection ends once its streams have."""
        self.codec.close(error_code, reason)
        self.draining = True
        self.flush_soon()
        if not self.streams and self._read_scope is not None:
            self._read_scope.cancel()

    def _lost(self, why: str) -> None:
        self.closed = True
        streams, self.streams = self.streams, {}
        for s in streams.values():
            s.fail(StreamResetError(CONNECTION_LOST, why))

    def send_deadline(self) -> float:
        """When a send waiting for window from now gives up (never on a client connection)."""
        timeout = self._send_timeout
        return math.inf if timeout is None else anyio.current_time() + timeout

    def send_stalled(self, stream: H2Stream, *, progress: bool) -> None:
        """`stream` waited `send_timeout` for window: reset it; without any progress on the
        connection meanwhile (no WINDOW_UPDATE at all), end the connection too."""
        OVERLOAD.count("h2_send_timeouts")
        closing = not progress and not self.draining
        log.warning(
            "h2 %s opened no window on stream %d for %gs: resetting it%s",
            self.peer,
            stream.id,
            self._send_timeout,
            ", and closing the connection (no progress)" if closing else "",
        )
        stream.reset(CANCEL)
        if closing:
            self.close(ENHANCE_YOUR_CALM, "no flow-control progress")

    def holders(self) -> Iterator[Holding]:
        """Streams holding buffered bytes, a request body or a response (the overload action
        resets them)."""
        for s in list(self.streams.values()):
            if s.held:
                yield s.held, f"h2 {self.peer} stream {s.id}", s.reset

    def idle_rank(self) -> float | None:
        """A server connection without streams is idle: the oldest such goes first."""
        if self.streams or self.draining or self.closed:
            return None
        return self.opened

    def evict(self) -> str:
        self.close()
        return self.peer

    @property
    def available(self) -> bool:
        """Can take one more stream of ours (client side).

        At most as many streams as the connection window holds whole stream windows: a
        stream whose reader stalled keeps its window's worth unacknowledged, and the
        connection window is shared, so more streams than that could starve the others."""
        limits = self.codec.limits
        most = min(self.codec.remote_max_streams, limits.connection_window // limits.stream_window)
        return not self.closed and self.goaway_received is None and len(self.streams) < most
