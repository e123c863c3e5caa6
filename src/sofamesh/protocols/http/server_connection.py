"""One connection an HTTP/1.1 server serves: the read-handle-write loop and its timeouts.

A read records its deadline and phase (`IDLE`, `HEAD`, `BODY`, or the wait for
the client to take a response) for the server's sweeper, which cancels the
connection's `watch` once the deadline has passed; the request under way and
the head or body still arriving count in the process's buffer budget.
`Http1Server` (server.py) admits connections and owns them.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from sofamesh.codecs.http1 import (
    BodyStream,
    Http1ServerCodec,
    HttpIncompleteMessage,
    HttpProtocolError,
    HttpRequest,
    HttpResponse,
)
from sofamesh.codecs.http1.server import BODY, HEAD, IDLE
from sofamesh.protocols.http.relay import BodyTruncated, UploadBody, relay_body
from sofamesh.protocols.http.server_config import ConnInfo, handler_for
from sofamesh.transport.budget import OVERLOAD_HEADER
from sofamesh.transport.net import STREAM_ERRORS
from sofamesh.transport.streams import abort, aclose_forcefully, try_send

if TYPE_CHECKING:
    from sofamesh.protocols.http.server import Http1Server

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


class ServerConnection:
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
        overload, life, config = server.overload, server._life, server.config
        while True:
            request = None
            if codec.resting():
                # The wait for the next request inline (a coroutine frame fewer per request),
                # and so are `_arm(IDLE)` and `_feed` (a call each, and the server's `draining`
                # property read once a request fewer); a head or body in pieces, and whatever
                # else comes, takes `_next_request`.
                if life.draining:  # a request already on its way is still served
                    timeout = DRAIN_IDLE_GRACE
                else:
                    timeout = config.keepalive_timeout if self.served else config.header_timeout
                self.deadline, self.phase = _now() + timeout, IDLE
                try:
                    data = await self.stream.receive(65536)
                except anyio.EndOfStream:
                    data = b""
                finally:
                    self.deadline, self.phase = math.inf, None
                self.reading += len(data)
                overload.held += len(data)
                codec.receive_data(data)
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
                            data = codec.encode_response(response, close=life.draining)
                        else:
                            data, framing = codec.encode_streamed_head(
                                response, close=life.draining
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
                    self.deadline, self.phase = _now() + config.send_timeout, _SENDING
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
