"""One multiplexed Bolt client connection: many calls in flight, kept alive by heartbeats.

Theory of operation. `call(frame, at)` takes a fresh request id (`RequestIds`: positive
31-bit, wrapping to 1 and skipping ids still in flight), queues the encoded frame on the
`FrameWriter`, and waits for the response with that id; responses come back in any order
and a heartbeat ack may overtake them. The call gives up at `at` (anyio's clock) without
a cancel scope: its waiter is armed on the pool's `DeadlineWatch`, which wakes it with
`CallTimeoutError`, and the call forgets its id (a late response is dropped). A caller
that gives up by its own cancel scope forgets its id the same way.

Keep-alive follows sofa-bolt's client (`HeartbeatHandler`, `RpcHeartbeatTrigger`): when
nothing was received for `heartbeat_interval`, send a heartbeat; an ack resets the count
of misses; `max_missed` heartbeats in a row without an ack (each given
`heartbeat_timeout`) close the connection, failing its calls in flight, as a dead peer
or a black-holed network would otherwise hold them until their deadlines.

When the connection ends (peer closed, protocol error, missed heartbeats, `aclose`),
every call in flight fails with `UpstreamResetError`; only this connection's calls.

Bolt has no GOAWAY. A mesh server that drains (a sidecar being upgraded or stopped)
answers new requests with SERVER_THREADPOOL_BUSY marked `x-sofamesh-error:
unavailable` (the app never saw them: safe to send again). Such an answer retires the
connection: it takes no new call (the pool opens another), and closes itself once its
calls in flight are answered, so the server never has to close it under a request on
its way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio
import anyio.abc
import anyio.lowlevel

from sofamesh.codecs.bolt import (
    DEFAULT_LIMITS,
    BoltLimits,
    FrameDecoder,
    RemoteProtocolError,
    RequestFrame,
    RequestIds,
    ResponseFrame,
    ResponseStatus,
    encode,
    encode_request_as,
    heartbeat,
    heartbeat_ack,
)
from sofamesh.deadlines import DeadlineWatch
from sofamesh.protocols.bolt.calls import CallTimeoutError as CallTimeoutError
from sofamesh.protocols.bolt.calls import CallWaiter, drains
from sofamesh.protocols.bolt.calls import ConnectionStatistics as ConnectionStatistics
from sofamesh.protocols.bolt.calls import HeartbeatConfig as HeartbeatConfig
from sofamesh.protocols.bolt.io import DEFAULT_MAX_BUFFERED, FrameWriter, WriterClosedError
from sofamesh.transport.errors import ConnectError, UpstreamProtocolError, UpstreamResetError
from sofamesh.transport.net import STREAM_ERRORS
from sofamesh.transport.workers import wake, waker_class

log = logging.getLogger("sofamesh.bolt")
_new_object = object.__new__
_BUSY = ResponseStatus.SERVER_THREADPOOL_BUSY


class BoltClientConnection:
    """Run with `await task_group.start(conn.run)`; `call` from any task."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        name: str,
        *,
        limits: BoltLimits = DEFAULT_LIMITS,
        heartbeats: HeartbeatConfig | None = None,
        first_request_id: int = 1,
        on_closed: Callable[[BoltClientConnection], None] | None = None,
        deadlines: DeadlineWatch | None = None,
    ) -> None:
        self.name = name  # host:port, for log lines
        self._deadlines = deadlines or DeadlineWatch()  # one that never runs: no deadlines
        self._waker = waker_class()  # made where the connection is, on its loop
        self._stream = stream
        self._decoder = FrameDecoder(limits)
        self._writer = FrameWriter(stream)
        self._ids: RequestIds[CallWaiter] = RequestIds(first=first_request_id)
        self._hb = heartbeats or HeartbeatConfig()
        self._on_closed = on_closed
        self._scope: anyio.CancelScope | None = None
        self._closed = False
        self._retired = False  # the server drains: no new calls here
        self._why = "closed"
        self._reads = 0  # receives so far: the heartbeat task's idea of "idle"
        self._calls = self._beats = self._missed_total = self._late = 0
        self._acked = anyio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        return len(self._ids)

    @property
    def calls(self) -> int:
        """Calls sent so far (oneway ones included)."""
        return self._calls

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            len(self._ids), self._calls, self._beats, self._missed_total, self._late
        )

    async def wait_heartbeat_acked(self) -> None:
        """Return when the next heartbeat is acknowledged."""
        await self._acked.wait()

    # -- calls ---------------------------------------------------------------------------

    async def call(self, frame: RequestFrame, at: float = math.inf) -> ResponseFrame:
        """Send `frame` under a fresh id and return its response by `at` (anyio's clock;
        any id in `frame` is ignored). Raises `ConnectError` if the connection was already
        closed (the frame never left), `UpstreamResetError` if it closes before the
        response arrives, `CallTimeoutError` at `at`."""
        waiter = self.begin(frame, at)
        if waiter is None:
            if self._closed or self._retired:
                raise ConnectError(f"bolt connection to {self.name} closed before sending")
            return await self._call_behind(frame, at)
        try:
            await waiter.waker
        except BaseException:
            self.forget(waiter)
            raise
        return self.finish(waiter)

    async def _call_behind(self, frame: RequestFrame, at: float) -> ResponseFrame:
        """`call` while the socket is behind: wait for room in the writer first."""
        waiter = CallWaiter(self._waker())
        rid = self._ids.allocate(waiter)
        entry = self._deadlines.add(at, waiter) if at != math.inf else None
        self._calls += 1
        try:
            data = encode(frame, request_id=rid)
            if self._writer.buffered + len(data) <= DEFAULT_MAX_BUFFERED:
                self._writer.write_nowait(data)
            else:  # the socket is behind: wait for room, but not past the deadline
                with anyio.CancelScope(deadline=at):
                    await self._writer.write(data)
            await waiter.waker
        except WriterClosedError:
            raise UpstreamResetError(f"bolt connection to {self.name} {self._why}") from None
        finally:
            self._ids.pop(rid)
            if entry is not None:
                self._deadlines.remove(entry)
            self._close_if_drained()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.response is not None
        return waiter.response

    def begin(
        self,
        frame: RequestFrame,
        at: float = math.inf,
        header: bytes | None = None,
        timeout_ms: int = 0,
    ) -> CallWaiter | None:
        """`call`'s first half, without a coroutine of its own (the sidecar's hot path):
        the frame queued under a fresh id and the deadline armed. Await the waiter's
        `waker`, then `finish(waiter)` (or `forget(waiter)` if the wait ends otherwise).
        None when the call must take `call`'s path instead: the connection is closed or
        retired, or its writer is too far behind to queue the frame without waiting.
        With `header`, the frame is sent with that header map and `timeout_ms` in place
        of its own (`encode_request_as`: a proxy's forward, no frame built for it)."""
        if self._closed or self._retired:
            return None
        # `CallWaiter(...)` without its Python `__init__` frame: one per proxied call.
        waiter = _new_object(CallWaiter)
        waiter.waker, waiter.response, waiter.error, waiter.entry = self._waker(), None, None, None
        rid = waiter.rid = self._ids.allocate(waiter)
        try:
            if header is None:
                data = encode(frame, request_id=rid)
            else:
                data = encode_request_as(frame, rid, header, timeout_ms)
        except BaseException:
            self._ids.pop(rid)
            raise
        writer = self._writer
        if writer.buffered + len(data) > DEFAULT_MAX_BUFFERED:
            self._ids.pop(rid)
            return None
        writer.write_nowait(data)  # open: it closes only with the connection
        if at != math.inf:
            waiter.entry = self._deadlines.add(at, waiter)
        self._calls += 1
        return waiter

    def finish(self, waiter: CallWaiter) -> ResponseFrame:
        """The response `begin`'s waiter was woken with; raises as `call` does. Releases
        what `begin` took, as `forget` does, in the same Python call."""
        response = waiter.response
        if response is None:  # woken by its deadline or the connection's end: id still held
            self._ids.pop(waiter.rid)
        if waiter.entry is not None:
            self._deadlines.remove(waiter.entry)
        if self._retired and not self._ids:  # `_close_if_drained`, inline
            self._shut("was drained by the peer")
        if waiter.error is not None:
            raise waiter.error
        assert response is not None
        return response

    def forget(self, waiter: CallWaiter) -> None:
        """Release what `begin` took (a late response is then dropped)."""
        if waiter.response is None:  # a response took its id out as it arrived
            self._ids.pop(waiter.rid)
        if waiter.entry is not None:
            self._deadlines.remove(waiter.entry)
        self._close_if_drained()

    async def send_oneway(self, frame: RequestFrame) -> None:
        """Send a oneway request (no response will come); its id is still fresh."""
        if self._closed:
            raise ConnectError(f"bolt connection to {self.name} closed before sending")
        rid = self._ids.allocate(CallWaiter(self._waker()))
        self._ids.pop(rid)  # nothing waits, but the id is not reused next
        self._calls += 1
        try:
            await self._writer.write(encode(frame._replace(oneway=True), request_id=rid))
        except WriterClosedError:
            raise UpstreamResetError(f"bolt connection to {self.name} {self._why}") from None

    # -- the connection's tasks ----------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Read responses, write frames and keep the connection alive until it closes."""
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._write_then_close)
                if self._hb.enabled:
                    tg.start_soon(self._heartbeats)
                task_status.started()
                await self._read()
                tg.cancel_scope.cancel()
        finally:
            self._close_now()
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(self._stream)

    async def _write_then_close(self) -> None:
        await self._writer.run()
        self._shut("write failed")

    async def _read(self) -> None:
        decoder, pop = self._decoder, self._ids.pending.pop
        try:
            while True:
                data = await self._stream.receive(65536)
                self._reads += 1
                decoder.receive_data(data)
                # Not `for frame in decoder`: its sentinel test calls the frame's Python
                # `__eq__` once per response.
                frame = decoder.next_frame()
                while frame is not None:
                    # A response to a call in flight: `_dispatch`'s first branch, inline
                    # (a Python call per proxied call).
                    if (
                        type(frame) is ResponseFrame
                        and (waiter := pop(frame.request_id, None)) is not None
                    ):
                        waiter.response = frame
                        waker = waiter.waker
                        if not waker.done():
                            waker.set_result(None)
                        if frame.status == _BUSY and drains(frame):
                            self._retire()
                    else:
                        self._dispatch(frame)
                    frame = decoder.next_frame()
        except anyio.EndOfStream:
            self._why = "was closed by the peer"
        except STREAM_ERRORS as exc:
            self._why = f"failed: {exc!r}"
        except RemoteProtocolError as exc:
            log.warning("bolt: closing connection to %s: %s", self.name, exc)
            self._why = f"sent an invalid frame: {exc}"
            self._fail_all(UpstreamProtocolError(f"bolt peer {self.name} {self._why}"))

    def _dispatch(self, frame: ResponseFrame | RequestFrame) -> None:
        if type(frame) is ResponseFrame:
            waiter = self._ids.pop(frame.request_id)
            if waiter is None:
                self._late += 1  # its caller gave up, or a oneway's stray answer
                return
            waiter.response = frame
            waker = waiter.waker
            if not waker.done():
                waker.set_result(None)
            if frame.status == ResponseStatus.SERVER_THREADPOOL_BUSY and drains(frame):
                self._retire()
        elif frame.is_heartbeat:  # a server may probe too; answer as sofa-bolt does
            self._writer.write_nowait(encode(heartbeat_ack(frame)))
        else:
            log.debug("bolt: ignoring a request from server %s", self.name)

    async def _heartbeats(self) -> None:
        """Ping after a whole interval with nothing received (no clock read per frame)."""
        hb, missed = self._hb, 0
        while True:
            seen = self._reads
            await anyio.sleep(hb.interval)
            if self._reads != seen:
                continue
            self._beats += 1
            if await self._ping(hb.timeout):
                missed = 0
                self._acked.set()
                self._acked = anyio.Event()
                continue
            missed += 1
            self._missed_total += 1
            if missed >= hb.max_missed:
                log.warning(
                    "bolt: closing connection to %s: %d heartbeats unanswered", self.name, missed
                )
                self._shut(f"missed {missed} heartbeats")
                return

    async def _ping(self, timeout: float) -> bool:
        waiter = CallWaiter(self._waker())
        rid = self._ids.allocate(waiter)
        try:
            self._writer.write_nowait(encode(heartbeat(rid, timeout_ms=int(timeout * 1000))))
            with anyio.move_on_after(timeout):
                await waiter.waker
        except WriterClosedError:
            return False
        finally:
            self._ids.pop(rid)
        return waiter.response is not None

    # -- closing -------------------------------------------------------------------------

    def _close_if_drained(self) -> None:
        if self._retired and not self._ids:
            self._shut("was drained by the peer")

    def _retire(self) -> None:
        """Take no new call; close once the calls in flight are answered (see the top)."""
        if self._retired:
            return
        self._retired = True
        log.debug("bolt: %s drains; moving new calls to another connection", self.name)
        on_closed, self._on_closed = self._on_closed, None
        if on_closed is not None:
            on_closed(self)  # out of the pool now, so new calls open another connection

    def _shut(self, why: str) -> None:
        self._why = why
        self._close_now()
        if self._scope is not None:
            self._scope.cancel()

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        self._fail_all(UpstreamResetError(f"bolt connection to {self.name} {self._why}"))
        if self._on_closed is not None:
            self._on_closed(self)

    def _fail_all(self, error: Exception) -> None:
        for _, waiter in self._ids.drain():
            if waiter.response is None and waiter.error is None:
                waiter.error = error
            wake(waiter.waker)

    async def aclose(self) -> None:
        """Close now: calls in flight fail with `UpstreamResetError`."""
        self._shut("was closed by this side")
        await anyio.lowlevel.checkpoint()
