"""One connection a Bolt server serves: its read loop, request tasks, writer and timers.

Frames are read and dispatched in the read loop: a heartbeat answered on the
spot, a request handed to a worker task borrowed from the server's reserve
(`transport.reserve`: workers outlive their connection, for the next), refused
busy while the server drains or the process is over its buffer budget. The
connection closes when idle, when a frame begun stalls, when its peer stops
reading its replies, or (draining) once quiet. `BoltServer` (server.py)
admits connections and owns them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from sofamesh.codecs.bolt import (
    CommandCode,
    FrameDecoder,
    HeaderMapError,
    RemoteProtocolError,
    RequestFrame,
    ResponseFrame,
    encode,
    encode_v1_reply,
    heartbeat_ack,
)
from sofamesh.codecs.bolt.codes import BOLT_V1
from sofamesh.codecs.bolt.frames import FrameHeader
from sofamesh.model import Result, Status
from sofamesh.protocols.bolt.io import FrameWriter, WriterClosedError
from sofamesh.protocols.bolt.mapping import error_response, reply_of
from sofamesh.transport.budget import OVERLOAD
from sofamesh.transport.net import STREAM_ERRORS
from sofamesh.transport.partial import PartialFrame
from sofamesh.transport.reserve import Crew, WorkerReserve

if TYPE_CHECKING:
    from sofamesh.protocols.bolt.server import BoltConnInfo, BoltServer

Job = Callable[[], Awaitable[None]]  # a task of the connection's own: its writer, a timer

log = logging.getLogger("sofamesh.bolt")

DRAIN_QUIET = 0.5  # seconds without a request before a draining connection closes
LINGER = 1.0  # seconds a refused peer gets to read its error reply before the close
_USED_LATER = 1e9  # idle rank offset: a used idle connection goes after every never-used one
_LINGER_READS = 16  # ... and at most this many reads of what it still sends (up to 1 MiB)
# Enum members read per request are bound once: `EnumType` defines `__getattr__`, so on
# 3.11 `CommandCode.HEARTBEAT` takes the slow attribute hook (about 1,100 instructions),
# where a module global costs about 40.
_HEARTBEAT = CommandCode.HEARTBEAT


class ServerConnection:
    """One accepted connection: the read loop, its request tasks and its writer."""

    def __init__(
        self,
        server: BoltServer,
        stream: anyio.abc.ByteStream,
        info: BoltConnInfo,
        reserve: WorkerReserve,
    ) -> None:
        self.server = server
        self.stream = stream
        self.info = info
        self.writer = FrameWriter(stream)
        self.in_flight = 0
        self._scope: anyio.CancelScope | None = None
        self._draining = False
        # Every task of the connection is a reserve worker's: its requests', its writer's
        # and its timers' (`transport.reserve`; no task is started per connection).
        self._workers: Crew[RequestFrame] = reserve.crew(self._handle)
        self._writing: Crew[Job] = reserve.crew(self._job)
        self._timers: Crew[Job] | None = reserve.crew(self._job)  # None once closed
        self._linger = False
        self._reads = 0
        self.opened = time.monotonic()
        self.used = False  # has sent a request
        self.partial = PartialFrame()  # a frame begun and not yet whole (in the budget)

    def begin_drain(self) -> None:
        if self._scope is not None and self._timers is not None and not self._draining:
            self._draining = True
            self._timers.submit(self._close_when_quiet)

    async def _close_when_quiet(self) -> None:
        """Close once a whole `DRAIN_QUIET` passed with nothing in flight or received."""
        while True:
            seen = self._reads
            await anyio.sleep(DRAIN_QUIET)
            if self._reads == seen and self.in_flight == 0 and self._scope is not None:
                self._scope.cancel()
                return

    def idle_rank(self) -> float | None:
        """Never used connections first (oldest first), then used ones with nothing in flight.

        Bolt clients keep pooled connections open between calls, so a used one is only
        closed when no never-used one is left.
        """
        if self.in_flight or self._scope is None or self._scope.cancel_called:
            return None
        return self.opened + (_USED_LATER if self.used else 0.0)

    def evict(self) -> str:
        if self._scope is not None:
            self._scope.cancel()
        return self.info.peer

    async def run(self) -> None:
        timers, writing = self._timers, self._writing
        assert timers is not None
        try:
            writing.submit(self.writer.run)
            with anyio.CancelScope() as scope:
                self._scope = scope
                timers.submit(self._watch_idle)
                if self.server.draining:  # accepted as the drain began
                    self.begin_drain()
                try:
                    await self._read()
                finally:
                    # Idle workers first go back on their own (woken, not cancelled:
                    # a cancelled task costs anyio several loop passes to deliver to),
                    # the calls in flight and the timers are cancelled: the peer is
                    # gone, or we close.
                    self._workers.close()
                    timers.close()
                    self._timers = None  # takes no timer from now on
            await self._workers.wait_returned()  # the cancelled calls end before the close
            await timers.wait_returned()
            await self._last_words()
        except Exception:
            log.exception("bolt connection from %s failed", self.info.peer)
        finally:
            writing.close()  # the writer, if `_last_words` gave up on it
            try:
                await writing.wait_returned()
            finally:
                self.writer.close()  # what is still queued leaves the buffer budget
                self.partial.release()
                await anyio.aclose_forcefully(self.stream)

    async def _job(self, job: Job) -> None:
        """A task of the connection's own (its writer, a timer), on a reserve worker: its
        failure ends this connection, not the server the worker belongs to."""
        try:
            await job()
        except Exception:
            log.exception("bolt connection from %s failed", self.info.peer)
            if self._scope is not None:
                self._scope.cancel()

    async def _read(self) -> None:
        server = self.server
        decoder = FrameDecoder(server.limits, check_request_headers=not server._handler_checks)
        while True:
            data = await self._receive()
            if not data:
                return
            decoder.receive_data(data)
            whole = False
            while True:
                try:
                    frame = decoder.next_frame()
                except RemoteProtocolError as exc:
                    self._refuse(exc)
                    if exc.fatal:
                        return
                    continue  # the frame was skipped; the ones behind it are fine
                if frame is None:
                    break
                whole = True
                self._dispatch(frame)
            pending = decoder.buffered
            if pending or self.partial.held:
                self.partial.track(pending, whole)

    async def _receive(self) -> bytes:
        """The next bytes; b"" at EOF or on error."""
        try:
            data = await self.stream.receive(65536)
        except anyio.EndOfStream:
            return b""
        except STREAM_ERRORS:
            return b""
        self._reads += 1
        return data

    async def _watch_idle(self) -> None:
        """Close the connection once a whole `idle_timeout` passed with nothing received
        and nothing in flight, or a frame begun stayed unfinished for `frame_timeout` or
        stopped growing for `frame_progress_timeout` (one timer per connection, not one
        per read: `PartialFrame.nap`)."""
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
                log.debug("bolt: closing idle connection from %s", self.info.peer)
                self._scope.cancel()
            elif why := partial.overdue(server.frame_timeout, server.frame_progress_timeout):
                self._drop_partial(why)

    def _drop_partial(self, why: str) -> None:
        server, peer, held = self.server, self.info.peer, self.partial.held
        if why == "timeout":
            OVERLOAD.count("bolt_frame_timeouts")
            log.warning("bolt %s sent %d bytes of a frame and not the rest within %gs; "
                        "closing", peer, held, server.frame_timeout)  # fmt: skip
        else:
            OVERLOAD.count("bolt_frame_stalls")
            log.warning("bolt %s sent %d bytes of a frame, then nothing for %gs; closing",
                        peer, held, server.frame_progress_timeout)  # fmt: skip
        if self._scope is not None:
            self._scope.cancel()

    def _dispatch(self, frame: RequestFrame | ResponseFrame) -> None:
        server = self.server
        if not isinstance(frame, RequestFrame):
            return  # we send no requests; a stray response is harmless
        if frame.cmd_code == _HEARTBEAT:  # `is_heartbeat`, without a property call
            server.heartbeats += 1
            self._send(encode(heartbeat_ack(frame)))
            return
        server.requests += 1
        if server._life.draining:  # the `draining` property's, read per request
            self._send(encode(error_response(frame, Status.UNAVAILABLE, "the server is draining")))
            return
        if OVERLOAD.held > OVERLOAD.limit:  # busy: SOFARPC clients retry elsewhere
            OVERLOAD.shed("bolt", self.info.peer)
            self._send(encode(error_response(frame, Status.OVERLOADED, "overloaded: try again")))
            return
        self.in_flight += 1
        self.used = True
        self._workers.submit(frame)

    async def _handle(self, frame: RequestFrame) -> None:
        server = self.server
        try:
            response = await server.handler(frame, self.info)
            if response is not None and not frame.oneway:
                if isinstance(response, Result):
                    payload = response.payload
                    if type(payload) is ResponseFrame and frame.version == BOLT_V1:
                        # `reply_of`'s usual case, written directly: two Python calls
                        # fewer per proxied call (`reply_of`, `_send`).
                        data = encode_v1_reply(payload, frame.request_id)
                        writer = self.writer
                        try:  # noqa: SIM105
                            writer.write_nowait(data)
                        except WriterClosedError:
                            pass  # the peer is gone: nowhere to answer
                        if writer.buffered > server.max_write_buffer:
                            self._overflowed()
                        return
                    response = reply_of(response, frame)
                self._send(response if isinstance(response, bytes) else encode(response))
        except HeaderMapError as exc:  # what the decoder left to the handler to find
            server.requests -= 1  # refused as a frame, as the decoder's refusal is
            exc.header = frame.fixed_header()
            self._refuse(exc)
        except Exception as exc:
            server.handler_errors += 1
            log.exception(
                "bolt handler failed on request %d from %s", frame.request_id, self.info.peer
            )
            if not frame.oneway:
                detail = f"internal error: {type(exc).__name__}"
                self._send(encode(error_response(frame, Status.INTERNAL, detail)))
        finally:
            self.in_flight -= 1

    def _send(self, data: bytes) -> None:
        writer = self.writer
        try:  # not contextlib.suppress: three Python calls per response  # noqa: SIM105
            writer.write_nowait(data)
        except WriterClosedError:
            pass  # the peer is gone: nowhere to answer
        if writer.buffered > self.server.max_write_buffer:
            self._overflowed()

    def _overflowed(self) -> None:
        """The peer does not read its replies: close the connection."""
        writer = self.writer
        if self._scope is not None:
            OVERLOAD.count("bolt_write_buffer_overflows")
            log.warning(
                "bolt %s does not read its replies: %d bytes queued; closing the connection",
                self.info.peer,
                writer.buffered,
            )
            writer.close()
            self._scope.cancel()

    def _refuse(self, exc: RemoteProtocolError) -> None:
        self.server.protocol_errors += 1
        what = "closing the connection" if exc.fatal else "skipped the frame"
        log.warning("%s, from %s (%s)", exc, self.info.peer, what)
        header: FrameHeader | None = exc.header
        if header is not None and header.cmd_type != 0 and header.cmd_code != 0:
            self._send(encode(error_response(header, Status.BAD_REQUEST, str(exc))))
            self._linger = exc.fatal

    async def _last_words(self) -> None:
        """Send what is still queued (a final error reply) before the socket closes.

        After a fatal error the peer may still be sending the refused frame: half-close
        and read until it closes, as closing with unread input makes the kernel send a
        RST that can destroy the reply before the peer reads it (RFC 9112 9.6).
        """
        self.writer.finish()
        if not self.writer.buffered and not self._linger:
            return  # all sent, nothing to linger for: no scopes to enter (the usual close)
        errors: tuple[type[Exception], ...] = (anyio.EndOfStream, *STREAM_ERRORS)
        with anyio.CancelScope(shield=True), anyio.move_on_after(LINGER):
            await self.writer.finished.wait()
            if self._linger and isinstance(self.stream, anyio.abc.SocketStream):
                with contextlib.suppress(*errors):
                    await self.stream.send_eof()
                    for _ in range(_LINGER_READS):
                        await self.stream.receive(65536)
