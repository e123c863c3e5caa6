"""An HTTP/1.1 server on any anyio listener: one task per connection, all owned by `serve`.

Each connection reads a request, awaits the handler, writes the response in
one `send`, and loops while the connection persists (RFC 9112 §9.3). Requests
on one connection are handled one at a time, so pipelined responses leave in
request order. A misbehaving peer costs only its own connection: malformed
input gets 400/413/431/501 and a close, a failing handler gets a 500, and
every protocol error is logged once with the peer's address.

Timeouts, by phase of the next request (see `Http1ServerConfig`): waiting
for a first byte (`header_timeout` on a new connection, `keepalive_timeout`
between requests: then the connection just closes), reading the head
(`header_timeout` from its first byte: a 408 answers a slow client), and
reading the body (`body_timeout` between reads, also 408). A response the
client does not take within `send_timeout` (it stopped reading) ends the
connection, as nginx's `send_timeout` does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc

from sofamesh.codecs.http1 import (
    DEFAULT_LIMITS,
    BodyStream,
    Http1Limits,
    Http1ServerCodec,
    HttpIncompleteMessage,
    HttpProtocolError,
    HttpRequest,
    HttpResponse,
)
from sofamesh.codecs.http1.server import BODY, HEAD, IDLE
from sofamesh.protocols.http.relay import BodyTruncated, UploadBody, relay_body
from sofamesh.protocols.http.server_config import (
    ConnInfo,
    Http1Handler,
    Http1ServerConfig,
    ServerStatistics,
    handler_for,
)
from sofamesh.protocols.http.sweeper import Sweeper
from sofamesh.transport.budget import OVERLOAD, OVERLOAD_HEADER, Holding, Overload
from sofamesh.transport.net import STREAM_ERRORS, format_address
from sofamesh.transport.serving import ServerLifecycle
from sofamesh.transport.streams import abort, aclose_forcefully, try_send
from sofamesh.transport.tls_names import peer_identity

__all__ = [
    "ConnInfo",
    "Http1Handler",
    "Http1Server",
    "Http1ServerConfig",
    "ServerStatistics",
    "handler_for",
]

log = logging.getLogger("sofamesh.http1")

# Read deadlines and the sweeper's checks share this clock (a C call: every read sets a
# deadline, and anyio's current_time costs a backend look-up per call).
_now = time.monotonic


_INTERNAL_ERROR = HttpResponse(
    500, [(b"content-type", b"text/plain; charset=utf-8")], b"internal server error\n"
)
DRAIN_IDLE_GRACE = 0.5  # seconds an idle connection may still bring a request once draining
_OVERLOADED = HttpResponse(
    503,
    [(b"content-type", b"text/plain; charset=utf-8"), OVERLOAD_HEADER, (b"retry-after", b"1")],
    b"overloaded: too much buffered, try again\n",
)
_LINGER_MAX_BYTES = 1 << 20
_SENDING = "sending"  # the phase while a response waits for the client to take it
_LINGER_ERRORS: tuple[type[Exception], ...] = (anyio.EndOfStream, *STREAM_ERRORS)


class Http1Server:
    """Serves `handler` over HTTP/1.1 on the listeners passed to `serve`."""

    def __init__(
        self,
        handler: Http1Handler,
        limits: Http1Limits = DEFAULT_LIMITS,
        *,
        max_connections: int = 10_000,
        keepalive_timeout: float = 60.0,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        linger_timeout: float = 2.0,
        send_timeout: float = 60.0,
        max_connections_per_source: int = 0,
        overload: Overload = OVERLOAD,
    ) -> None:
        self.overload = overload  # the buffer budget its requests count in, and are shed by
        self.config = Http1ServerConfig(
            limits,
            max_connections,
            keepalive_timeout,
            header_timeout,
            body_timeout,
            linger_timeout,
            send_timeout,
            max_connections_per_source,
        )
        self.handler = handler
        self._life: ServerLifecycle[_Connection] = ServerLifecycle(
            "http1",
            max_connections,
            on_accept_end=self._accept_ended,
            max_per_source=max_connections_per_source,
        )
        cfg = self.config
        timeouts = (cfg.keepalive_timeout, cfg.header_timeout, cfg.body_timeout, cfg.send_timeout)
        # A timeout fires at most a quarter of its length late.
        self._sweeper = Sweeper(self._life.conns, min(min(timeouts) / 4, 1.0), _now)
        self._requests_served = 0
        self._protocol_errors = 0
        self._handler_errors = 0
        overload.watch(self)  # its exchanges' buffers, for the overload action

    async def serve(
        self,
        listener: anyio.abc.Listener[Any],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve connections until `drain` finishes them; closes `listener`.

        Reports readiness through `task_status` (use `task_group.start`). May
        run once per listener, concurrently.
        """
        await self._life.serve(listener, self._admit, task_status, also=self._start_sweeper)

    def _start_sweeper(self, tg: anyio.abc.TaskGroup) -> None:
        tg.start_soon(self._sweeper.run, self._stop_sweeping_if_done)

    def _stop_sweeping_if_done(self) -> None:
        # Drained and no connection left: nothing to watch, let `serve` return now.
        life = self._life
        if life.draining and not life.conns and not life.accepting:
            self._sweeper.stop()

    async def _accept_ended(self) -> None:
        self._stop_sweeping_if_done()

    async def _admit(self, stream: anyio.abc.ByteStream) -> None:
        if not await self._life.admit(stream):
            return
        conn = _Connection(self, stream, self._new_info(stream))
        self._life.conns.add(conn)
        self._sweeper.wake()
        await conn.run()

    def _new_info(self, stream: Any) -> ConnInfo:
        peer = format_address(stream.extra(anyio.abc.SocketAttribute.remote_address, None))
        local = format_address(stream.extra(anyio.abc.SocketAttribute.local_address, None))
        return ConnInfo(self._life.accepted, peer, local, peer_identity(stream))

    async def drain(self) -> None:
        """Stop accepting, close idle connections, finish in-flight requests, return.

        Each in-flight request gets its response with "Connection: close".
        A connection idle when the drain begins, or between requests while it
        runs, waits `DRAIN_IDLE_GRACE` more (the sweeper closes it then) and a
        request that arrives meanwhile is answered, with the close: a keep-alive
        client may have sent one the loop has not read yet, and closing with it
        unread would lose it (RFC 9112 9.6). Bound the drain with
        `anyio.move_on_after` and then cancel `serve` to cut the stragglers off.
        """
        self._life.begin_drain()
        deadline = _now() + DRAIN_IDLE_GRACE
        for conn in self._life.conns:
            conn.close_idle_by(deadline)
        await self._life.wait_stopped()

    def holders(self) -> Iterator[Holding]:
        for conn in list(self._life.conns):
            yield conn.held + conn.reading, f"http1 {conn.info.peer}", conn.watch.cancel

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(
            **self._life.connection_counts(),
            requests_served=self._requests_served,
            protocol_errors=self._protocol_errors,
            handler_errors=self._handler_errors,
        )

    @property
    def draining(self) -> bool:
        return self._life.draining

    def _forget(self, conn: _Connection) -> None:
        self._life.conns.discard(conn)
        self._stop_sweeping_if_done()


class _Connection:
    """One accepted connection: the read-handle-write loop and its timeouts."""

    __slots__ = (
        "codec",
        "deadline",
        "evicted",
        "expired",
        "head_deadline",
        "held",
        "info",
        "phase",
        "reading",
        "served",
        "server",
        "stream",
        "watch",
    )

    def __init__(self, server: Http1Server, stream: anyio.abc.ByteStream, info: ConnInfo) -> None:
        self.server = server
        self.stream = stream
        self.info = info
        self.codec = Http1ServerCodec(server.config.limits)
        # Timeouts are watched by the server's sweeper rather than a cancel scope per
        # read (anyio's scopes cost 4-15 us each): a read records its deadline and
        # phase, and the sweeper cancels `watch` once the deadline has passed.
        self.watch = anyio.CancelScope()
        self.deadline = math.inf  # while waiting on the peer; inf otherwise
        self.phase: str | None = None  # what the pending wait is for (IDLE, HEAD, BODY, _SENDING)
        self.expired: str | None = None  # the phase whose deadline passed
        self.head_deadline: float | None = None
        self.served = 0
        self.reading = 0  # bytes received of the request not yet whole (in the budget)
        self.held = 0  # bytes of the exchange under way (in the budget)
        self.evicted = False  # closed by the idle budget

    def close_idle_by(self, deadline: float) -> None:
        if self.phase is IDLE:
            self.deadline = min(self.deadline, deadline)

    def idle_rank(self) -> float | None:
        """When the wait for the next complete request began; None while one is served.

        A connection still reading a head counts as idle too (a slowloris is no client
        to keep); one reading a body is busy.
        """
        if self.evicted or self.watch.cancel_called:
            return None
        config = self.server.config
        if self.phase is IDLE:
            return self.deadline - (
                config.keepalive_timeout if self.served else config.header_timeout
            )
        if self.phase is HEAD and self.head_deadline is not None:
            return self.head_deadline - config.header_timeout
        return None

    def evict(self) -> str:
        # Closing the stream ends the wait for a request at once (and cheaper than a cancel).
        self.evicted = True
        if not abort(self.stream):
            self.watch.cancel()
        return self.info.peer

    def check(self, now: float) -> None:
        """The sweeper's look: end a wait that outlived its deadline."""
        if self.deadline <= now:
            self.expired = self.phase
            self.deadline = math.inf
            self.watch.cancel()

    async def run(self) -> None:
        try:
            with self.watch:
                await self._serve()
            if self.expired is HEAD or self.expired is BODY:
                # A timeout mid-request: tell the client (RFC 9110 §15.5.9).
                what = "request head" if self.expired is HEAD else "request body"
                with anyio.move_on_after(self.server.config.linger_timeout):
                    await self._reject(HttpProtocolError(408, f"timed out reading the {what}"))
            elif self.expired is _SENDING:
                log.warning(
                    "http1 %s took no response within %gs; closing the connection",
                    self.info.peer,
                    self.server.config.send_timeout,
                )
        except BodyTruncated as exc:
            log.warning("http1 %s: %s; closing the connection mid-body", self.info.peer, exc)
        except STREAM_ERRORS as exc:
            log.debug("http1 connection from %s lost: %r", self.info.peer, exc)
        except Exception:
            log.exception("http1 connection from %s failed", self.info.peer)
        finally:
            self.server.overload.held -= self.reading
            self.reading = 0
            self.server._forget(self)
            await aclose_forcefully(self.stream)

    async def _serve(self) -> None:
        server, codec = self.server, self.codec
        handler = server.handler
        if self.info.identity:
            handler = handler_for(handler, self.info.identity)
        overload = server.overload
        while True:
            request = None
            if codec.resting():
                # The wait for the next request inline (a coroutine frame fewer per request);
                # a head or body in pieces, and whatever else comes, takes `_next_request`.
                self._arm(IDLE)
                try:
                    data = await self.stream.receive(65536)
                except anyio.EndOfStream:
                    data = b""
                finally:
                    self.deadline, self.phase = math.inf, None
                self._feed(data)
                try:
                    request = self._take()
                except HttpProtocolError as exc:
                    await self._reject(exc)
                    return
            if request is None:
                request = await self._next_request()
                if request is None:
                    return
            # The buffers this exchange holds count against the process's budget until the
            # response has left; past the budget, new requests are shed (transport/budget.py).
            held = len(request.body)
            overload.held += held
            body: BodyStream | None = None
            try:
                if overload.held > overload.limit:
                    data = self._shed()
                else:
                    try:
                        response = await handler(request, self.info)
                        body = response.stream
                        if body is None:
                            data = codec.encode_response(response, close=server.draining)
                        else:
                            data, framing = codec.encode_streamed_head(
                                response, close=server.draining
                            )
                        del response  # only its encoding outlives this line
                    except Exception:
                        data = self._failed(request)
                        if body is not None:
                            await body.aclose()
                            body = None
                overload.held += len(data)
                held += len(data)
                self.held = held  # the overload action's measure of this connection
                if not try_send(self.stream, data):
                    # A client that stopped reading holds a response here; the sweeper ends it.
                    self.deadline, self.phase = _now() + server.config.send_timeout, _SENDING
                    await self.stream.send(data)
                if body is not None:
                    await relay_body(body, framing, self._send_timed, overload)
            finally:
                overload.held -= held
                self.held = 0
                self.deadline, self.phase = math.inf, None
                if body is not None:
                    await body.aclose()
            self.served += 1
            server._requests_served += 1
            if codec.must_close:
                await self._linger()
                return

    async def _send_timed(self, data: bytes) -> None:
        """Send a piece of a streamed body, under `send_timeout` (the sweeper watches)."""
        self.deadline, self.phase = _now() + self.server.config.send_timeout, _SENDING
        try:
            await self.stream.send(data)
        finally:
            self.deadline, self.phase = math.inf, None

    async def _read_upload(self) -> bytes:
        """One read of a streamed request body, under `body_timeout` (the sweeper watches)."""
        if self.codec.wants_continue:
            await self.stream.send(self.codec.encode_continue())
        self._arm(BODY)
        try:
            return await self.stream.receive(65536)
        except anyio.EndOfStream:
            return b""
        finally:
            self.deadline, self.phase = math.inf, None

    async def _next_request(self) -> HttpRequest | None:
        codec = self.codec
        while True:
            try:
                request = self._take()
            except HttpProtocolError as exc:
                await self._reject(exc)
                return None
            if request is not None:
                return request
            if codec.must_close:
                return None
            if codec.wants_continue:
                await self.stream.send(codec.encode_continue())
            self._arm(codec.phase)
            try:
                data = await self.stream.receive(65536)
            except anyio.EndOfStream:
                data = b""
            finally:
                self.deadline = math.inf
                self.phase = None
            self._feed(data)

    def _take(self) -> HttpRequest | None:
        """The next whole request the codec holds, ready to serve; None if none is whole yet.
        Raises `HttpProtocolError` for one the codec refuses."""
        codec = self.codec
        request = codec.next_request()
        if request is not None:
            if codec.streaming:  # a body too large to buffer: read as the upstream takes it
                request.stream = UploadBody(codec, self._read_upload)
            self.head_deadline = None
            if self.reading:  # from here the exchange counts the body itself
                self.server.overload.held -= self.reading
                self.reading = 0
        return request

    def _feed(self, data: bytes) -> None:
        """Hand bytes read (`b""` at EOF) to the codec; a request still arriving counts in
        the buffer budget (a slow upload too)."""
        self.reading += len(data)
        self.server.overload.held += len(data)
        self.codec.receive_data(data)

    def _arm(self, phase: str) -> None:
        """Set the deadline of the read about to start (for the sweeper)."""
        config = self.server.config
        if phase is IDLE:
            if self.server.draining:  # a request already on its way is still served
                timeout = DRAIN_IDLE_GRACE
            else:
                timeout = config.keepalive_timeout if self.served else config.header_timeout
        elif phase is HEAD:
            if self.head_deadline is None:
                self.head_deadline = _now() + config.header_timeout
            timeout = self.head_deadline - _now()
        else:
            timeout = config.body_timeout
        self.deadline = _now() + timeout
        self.phase = phase

    def _shed(self) -> bytes:
        """503 for a request that came while the process is over its buffer budget."""
        self.server.overload.shed("http1", self.info.peer)
        return self.codec.encode_response(_OVERLOADED, close=self.server.draining)

    def _failed(self, request: HttpRequest) -> bytes:
        """The handler raised (or its response would not encode): log it, answer 500."""
        self.server._handler_errors += 1
        log.exception(
            "http1 handler failed on %s %s from %s", request.method, request.target, self.info.peer
        )
        return self.codec.encode_response(_INTERNAL_ERROR, close=self.server.draining)

    async def _reject(self, error: HttpProtocolError) -> None:
        self.server._protocol_errors += 1
        if isinstance(error, HttpIncompleteMessage):
            log.info("http1 %s closed the connection mid-request", self.info.peer)
            return
        log.warning("http1 %d from %s: %s", error.status, self.info.peer, error.reason)
        await self.stream.send(self.codec.encode_error(error))
        await self._linger()

    async def _linger(self) -> None:
        """Half-close, then read until the peer closes, before the full close.

        RFC 9112 §9.6: closing with unread input makes the kernel send a RST,
        which can destroy the last response before the client has read it.
        """
        with anyio.move_on_after(self.server.config.linger_timeout):
            try:
                await self.stream.send_eof()
                discarded = 0
                while discarded < _LINGER_MAX_BYTES:
                    discarded += len(await self.stream.receive(65536))
            except _LINGER_ERRORS:
                pass
