"""A Dubbo server on any anyio listener: multiplexed connections, a task per request.

Each connection reads frames and hands each request to a task (reused:
`transport.workers`), so a slow call holds up nothing; responses leave in completion
order through the connection's `FrameWriter`, addressed by request id. Heartbeats are
answered on the spot by the server (a proxy never forwards them); other events and
oneway requests get no reply (oneway ones still run).

A misbehaving peer costs only its own connection: a bad magic closes it; a body over
the limit gets a BAD_REQUEST reply (the header was readable) and then the close. A
connection with nothing in flight that receives nothing for `idle_timeout` is closed
(Dubbo consumers send heartbeats every 60 s; Dubbo servers close after 180 s), and so is
one whose frame begun is not whole within `frame_timeout` or stops growing for
`frame_progress_timeout` (`transport/partial.py`, as for Bolt).
`drain()` stops accepting, answers new requests with SERVER_THREADPOOL_EXHAUSTED (a
Dubbo client's failover retries it elsewhere), lets the calls in flight finish, closes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import attrs

from sofamesh.codecs import dubbo
from sofamesh.codecs.dubbo import DubboLimits, FrameDecoder, RequestFrame, encode
from sofamesh.model import Status
from sofamesh.protocols.bolt.io import FrameWriter, WriterClosedError
from sofamesh.protocols.dubbo.mapping import error_response
from sofamesh.transport.budget import OVERLOAD, Holding
from sofamesh.transport.net import STREAM_ERRORS, format_address
from sofamesh.transport.partial import PartialFrame
from sofamesh.transport.serving import ServerLifecycle
from sofamesh.transport.tls import peer_identity
from sofamesh.transport.workers import Workers

log = logging.getLogger("sofamesh.dubbo")

LINGER = 1.0  # seconds a refused peer gets to read its error reply before the close
_OVERDUE = {"timeout": "not the rest within frame_timeout",
            "stalled": "nothing more within frame_progress_timeout"}  # fmt: skip


@attrs.frozen(slots=True)
class DubboConnInfo:
    """Who is on the other end of a server connection."""

    id: int
    peer: str
    local: str
    identity: str = ""  # the client's SPIFFE ID, verified by mutual TLS; "" on plaintext


DubboHandler = Callable[[RequestFrame, DubboConnInfo], Awaitable[dubbo.ResponseFrame | None]]


@attrs.frozen(slots=True)
class DubboServerStatistics:
    active_connections: int
    accepted_connections: int
    rejected_connections: int
    evicted_connections: int  # idle ones closed to make room (transport/admission.py)
    requests: int
    heartbeats: int
    protocol_errors: int
    handler_errors: int
    draining: bool


class DubboServer:
    """Serves `handler` over Dubbo 2 on the listeners passed to `serve`."""

    def __init__(
        self,
        handler: DubboHandler,
        limits: DubboLimits = dubbo.DEFAULT_LIMITS,
        *,
        max_connections: int = 10_000,
        idle_timeout: float = 180.0,
        frame_timeout: float = 30.0,
        frame_progress_timeout: float = 5.0,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout  # a frame begun must arrive whole within this
        self.frame_progress_timeout = frame_progress_timeout  # ... and keep growing
        self._life: ServerLifecycle[_Connection] = ServerLifecycle("dubbo", max_connections)
        self.requests = self.heartbeats = self.protocol_errors = self.handler_errors = 0
        OVERLOAD.watch(self)  # half-received frames and unread replies, for the overload action

    async def serve(
        self,
        listener: anyio.abc.Listener[Any],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve connections until `drain` finishes them; closes `listener` (a
        socket listener, or another server's hand-off of the connections it sniffed)."""
        await self._life.serve(listener, self._admit, task_status)

    async def _admit(self, stream: anyio.abc.ByteStream) -> None:
        if not await self._life.admit(stream):
            return
        peer = format_address(stream.extra(anyio.abc.SocketAttribute.remote_address, None))
        local = format_address(stream.extra(anyio.abc.SocketAttribute.local_address, None))
        info = DubboConnInfo(self._life.accepted, peer, local, peer_identity(stream))
        conn = _Connection(self, stream, info)
        self._life.conns.add(conn)
        try:
            await conn.run()
        finally:
            self._life.conns.discard(conn)

    async def drain(self) -> None:
        """Stop accepting; refuse new requests; return once every connection closed."""
        self._life.begin_drain()
        for conn in self._life.conns:
            conn.close_if_idle()
        await self._life.wait_stopped()

    @property
    def draining(self) -> bool:
        return self._life.draining

    def holders(self) -> Iterator[Holding]:
        for conn in list(self._life.conns):
            held = conn.partial.held + conn.writer.buffered
            yield held, f"dubbo {conn.info.peer}", conn.close

    def statistics(self) -> DubboServerStatistics:
        return DubboServerStatistics(
            **self._life.connection_counts(),
            requests=self.requests,
            heartbeats=self.heartbeats,
            protocol_errors=self.protocol_errors,
            handler_errors=self.handler_errors,
        )


class _Connection:
    """One accepted connection: the read loop, its request tasks and its writer."""

    def __init__(self, server: DubboServer, stream: anyio.abc.ByteStream, info: DubboConnInfo):
        self.server = server
        self.stream = stream
        self.info = info
        self.writer = FrameWriter(stream)
        self.in_flight = 0
        self._scope: anyio.CancelScope | None = None
        self._workers: Workers[RequestFrame]
        self._reads = 0
        self.partial = PartialFrame()  # a frame begun and not yet whole (in the budget)

    def close_if_idle(self) -> None:
        if self.in_flight == 0 and self._scope is not None:
            self._scope.cancel()

    def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.writer.run)
                async with anyio.create_task_group() as handlers:
                    self._scope = handlers.cancel_scope
                    self._workers = Workers(handlers, self._handle, "dubbo worker")
                    handlers.start_soon(self._watch_idle)
                    try:
                        await self._read()
                    finally:
                        handlers.cancel_scope.cancel()  # the peer is gone, or we close
                        self._workers.close()
                self.writer.finish()
                with anyio.CancelScope(shield=True), anyio.move_on_after(LINGER):
                    await self.writer.finished.wait()
                tg.cancel_scope.cancel()
        except Exception:
            log.exception("dubbo connection from %s failed", self.info.peer)
        finally:
            self.partial.release()
            await anyio.aclose_forcefully(self.stream)

    async def _read(self) -> None:
        decoder = FrameDecoder(self.server.limits)
        while True:
            try:
                data = await self.stream.receive(65536)
            except anyio.EndOfStream:
                return
            except STREAM_ERRORS:
                return
            self._reads += 1
            decoder.receive_data(data)
            whole = False
            try:
                for frame in decoder:
                    whole = True
                    if type(frame) is RequestFrame:
                        self._dispatch(frame)
            except dubbo.RemoteProtocolError as exc:
                self._refuse(exc)
                return
            if (pending := decoder.buffered) or self.partial.held:
                self.partial.track(pending, whole)
            if self.server.draining and self.in_flight == 0:
                return

    async def _watch_idle(self) -> None:
        """Close once a whole `idle_timeout` passed with nothing received or in flight, or
        a frame begun is overdue (`PartialFrame.overdue`)."""
        server, partial = self.server, self.partial
        tick = min(server.idle_timeout, server.frame_timeout / 2)
        quiet, last = 0.0, time.monotonic()
        while self._scope is not None:
            seen = self._reads
            await partial.nap(tick, server.frame_progress_timeout)
            now = time.monotonic()
            quiet = quiet + now - last if self._reads == seen and self.in_flight == 0 else 0.0
            last = now
            if quiet >= server.idle_timeout:
                log.debug("dubbo: closing idle connection from %s", self.info.peer)
                self._scope.cancel()
            elif why := partial.overdue(server.frame_timeout, server.frame_progress_timeout):
                OVERLOAD.count(f"dubbo_frame_{'timeouts' if why == 'timeout' else 'stalls'}")
                log.warning("dubbo %s sent %d bytes of a frame, then %s; closing", self.info.peer,
                            partial.held, _OVERDUE[why])  # fmt: skip
                self._scope.cancel()

    def _dispatch(self, frame: RequestFrame) -> None:
        server = self.server
        if frame.event:
            if frame.two_way:  # a heartbeat (or any two-way event): echo it
                server.heartbeats += 1
                self._send(encode(dubbo.heartbeat_reply(frame)))
            return
        server.requests += 1
        if server.draining:
            if frame.two_way:
                reply = error_response(frame, Status.UNAVAILABLE, "the server is draining")
                self._send(encode(reply))
            return
        self.in_flight += 1
        self._workers.submit(frame)

    async def _handle(self, frame: RequestFrame) -> None:
        server = self.server
        try:
            response = await server.handler(frame, self.info)
            if response is not None and frame.two_way:
                self._send(encode(response))
        except Exception as exc:
            server.handler_errors += 1
            log.exception("dubbo handler failed on request %d from %s", frame.request_id,
                          self.info.peer)  # fmt: skip
            if frame.two_way:
                detail = f"internal error: {type(exc).__name__}"
                self._send(encode(error_response(frame, Status.INTERNAL, detail)))
        finally:
            self.in_flight -= 1
            if server.draining and self.in_flight == 0 and self._scope is not None:
                self._scope.cancel()

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(WriterClosedError):  # the peer is gone: nowhere to answer
            self.writer.write_nowait(data)

    def _refuse(self, exc: dubbo.RemoteProtocolError) -> None:
        self.server.protocol_errors += 1
        log.warning("%s, from %s (closing the connection)", exc, self.info.peer)
        header = exc.header
        if header is not None and header.is_request and header.two_way:
            self._send(encode(error_response(header, Status.BAD_REQUEST, str(exc))))
