"""One multiplexed Dubbo client connection: many calls in flight, kept alive by heartbeats.

`call(frame, at)` takes a fresh request id (`RequestIds`, shared with Bolt), queues the
encoded frame on the `FrameWriter` and waits for the response with that id; responses
come back in any order. The call gives up at `at` (anyio's clock) without a cancel
scope: its waiter is armed on the pool's `DeadlineWatch`, which wakes it with
`CallTimeoutError` (a scope per call cost about a tenth of the sidecar's CPU per
proxied request). A late response is then dropped. This is where a proxy re-maps
request ids: the caller's id never reaches the upstream connection, which has ids of
its own.

Keep-alive as Dubbo's `HeartbeatTimerTask`: when nothing was received for `interval`,
send a heartbeat; `max_missed` heartbeats in a row left unanswered for `timeout` each
close the connection. When it ends (peer closed, protocol error, missed heartbeats,
`aclose`), every call in flight on it fails with `UpstreamResetError`; only those.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio
import anyio.abc
import anyio.lowlevel
import attrs

from sofamesh.codecs import dubbo
from sofamesh.codecs.bolt.request_ids import RequestIds
from sofamesh.codecs.dubbo import DubboLimits, FrameDecoder, RequestFrame, ResponseFrame, encode
from sofamesh.deadlines import DeadlineWatch
from sofamesh.protocols.bolt.io import DEFAULT_MAX_BUFFERED, FrameWriter, WriterClosedError
from sofamesh.transport.errors import ConnectError, UpstreamProtocolError, UpstreamResetError
from sofamesh.transport.net import STREAM_ERRORS
from sofamesh.transport.workers import Signal, event_class

log = logging.getLogger("sofamesh.dubbo")


@attrs.frozen(kw_only=True)
class HeartbeatConfig:
    """Dubbo's defaults: a heartbeat after 60 s idle; three unanswered close."""

    interval: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    max_missed: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    enabled: bool = True


class CallTimeoutError(Exception):
    """The call's deadline passed before its response arrived."""


class _Waiter:
    __slots__ = ("error", "event", "response")

    def __init__(self, event: Signal) -> None:
        self.event = event
        self.response: ResponseFrame | None = None
        self.error: Exception | None = None

    def cancel(self) -> None:
        """The deadline watch's call: the deadline passed, wake the caller."""
        if self.response is None and self.error is None:
            self.error = CallTimeoutError("the deadline passed")
        self.event.set()


class DubboClientConnection:
    """Run with `await task_group.start(conn.run)`; `call` from any task."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        name: str,
        *,
        limits: DubboLimits = dubbo.DEFAULT_LIMITS,
        heartbeats: HeartbeatConfig | None = None,
        on_closed: Callable[[DubboClientConnection], None] | None = None,
        deadlines: DeadlineWatch | None = None,
    ) -> None:
        self.name = name  # host:port, for log lines
        self._deadlines = deadlines or DeadlineWatch()  # one that never runs: no deadlines
        self._stream = stream
        self._decoder = FrameDecoder(limits)
        self._writer = FrameWriter(stream)
        self._event = event_class()  # made where the connection is, on its loop
        self._ids: RequestIds[_Waiter] = RequestIds()
        self._hb = heartbeats or HeartbeatConfig()
        self._on_closed = on_closed
        self._scope: anyio.CancelScope | None = None
        self._closed = False
        self._why = "closed"
        self._reads = 0
        self.calls = self.heartbeats_sent = self.late_responses = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        return len(self._ids)

    async def call(self, frame: RequestFrame, at: float = math.inf) -> ResponseFrame:
        """Send `frame` under a fresh id and return its response by `at` (anyio's clock).
        Raises `ConnectError` if the connection was already closed (the frame never
        left), `UpstreamResetError` if it closes before the response arrives,
        `CallTimeoutError` at `at`."""
        if self._closed:
            raise ConnectError(f"dubbo connection to {self.name} closed before sending")
        waiter = _Waiter(self._event())
        rid = self._ids.allocate(waiter)
        entry = self._deadlines.add(at, waiter) if at != math.inf else None
        self.calls += 1
        try:
            data = encode(frame, request_id=rid)
            if self._writer.buffered + len(data) <= DEFAULT_MAX_BUFFERED:
                self._writer.write_nowait(data)
            else:  # the socket is behind: wait for room, but not past the deadline
                with anyio.CancelScope(deadline=at):
                    await self._writer.write(data)
            await waiter.event.wait()
        except WriterClosedError:
            raise UpstreamResetError(f"dubbo connection to {self.name} {self._why}") from None
        finally:
            self._ids.pop(rid)
            if entry is not None:
                self._deadlines.remove(entry)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.response is not None
        return waiter.response

    async def send_oneway(self, frame: RequestFrame) -> None:
        if self._closed:
            raise ConnectError(f"dubbo connection to {self.name} closed before sending")
        rid = self._ids.allocate(_Waiter(self._event()))
        self._ids.pop(rid)
        self.calls += 1
        try:
            await self._writer.write(encode(frame._replace(two_way=False), request_id=rid))
        except WriterClosedError:
            raise UpstreamResetError(f"dubbo connection to {self.name} {self._why}") from None

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
        decoder = self._decoder
        try:
            while True:
                data = await self._stream.receive(65536)
                self._reads += 1
                decoder.receive_data(data)
                for frame in decoder:
                    self._dispatch(frame)
        except anyio.EndOfStream:
            self._why = "was closed by the peer"
        except STREAM_ERRORS as exc:
            self._why = f"failed: {exc!r}"
        except dubbo.RemoteProtocolError as exc:
            log.warning("dubbo: closing connection to %s: %s", self.name, exc)
            self._why = f"sent an invalid frame: {exc}"
            self._fail_all(UpstreamProtocolError(f"dubbo peer {self.name} {self._why}"))

    def _dispatch(self, frame: dubbo.Frame) -> None:
        if isinstance(frame, ResponseFrame):
            waiter = self._ids.pop(frame.request_id)
            if waiter is None:
                self.late_responses += 1  # its caller gave up
                return
            waiter.response = frame
            waiter.event.set()
        elif frame.event and frame.two_way:  # a server's heartbeat: answer as Dubbo does
            self._writer.write_nowait(encode(dubbo.heartbeat_reply(frame)))

    async def _heartbeats(self) -> None:
        """Ping after a whole interval with nothing received (no clock read per frame)."""
        hb, missed = self._hb, 0
        while True:
            seen = self._reads
            await anyio.sleep(hb.interval)
            if self._reads != seen:
                continue
            self.heartbeats_sent += 1
            if await self._ping(hb.timeout):
                missed = 0
                continue
            missed += 1
            if missed >= hb.max_missed:
                log.warning("dubbo: closing connection to %s: %d heartbeats unanswered",
                            self.name, missed)  # fmt: skip
                self._shut(f"missed {missed} heartbeats")
                return

    async def _ping(self, timeout: float) -> bool:
        waiter = _Waiter(self._event())
        rid = self._ids.allocate(waiter)
        try:
            self._writer.write_nowait(encode(dubbo.heartbeat(rid)))
            with anyio.move_on_after(timeout):
                await waiter.event.wait()
        except WriterClosedError:
            return False
        finally:
            self._ids.pop(rid)
        return waiter.response is not None

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
        self._fail_all(UpstreamResetError(f"dubbo connection to {self.name} {self._why}"))
        if self._on_closed is not None:
            self._on_closed(self)

    def _fail_all(self, error: Exception) -> None:
        for _, waiter in self._ids.drain():
            if waiter.response is None and waiter.error is None:
                waiter.error = error
            waiter.event.set()

    async def aclose(self) -> None:
        """Close now: calls in flight fail with `UpstreamResetError`."""
        self._shut("was closed by this side")
        await anyio.lowlevel.checkpoint()
