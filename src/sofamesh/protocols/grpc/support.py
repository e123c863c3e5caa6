"""gRPC in the mesh: listeners that proxy stream by stream, the client terminal, `GrpcSupport`.

A gRPC call arrives on an HTTP/2 stream and becomes one `Invocation`
(protocol "grpc", service from `x-sofamesh-service`, else the `:path`'s
`package.Service`, else `:authority`; `grpc-timeout` as the deadline) whose
payload is a `StreamCall`. The chain runs as for any call; its terminal,
`GrpcSupport.send`, relays the stream to the chosen endpoint and returns when
the response has ended, with the provider's grpc-status as `Result.code` and
a neutral `Status` classified from it (`codecs.grpc.status_of`). The listener
then ends the caller's stream: with the provider's trailers as received, or
with the status of a failure the mesh produced (UNAVAILABLE for no endpoint,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED for limits, PERMISSION_DENIED for
auth; `codecs.grpc.STATUS_TO_GRPC`). An upstream reset after the response
began resets the caller's stream too, as Envoy does.

gRPC builds on the h2 slice: `GrpcSupport` plugs its stream handler into
`H2Support`'s listener for gRPC content types (`is_grpc`), so one port takes
gRPC, plain h2c and HTTP/1.1, and it relays over h2's connection pool.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from sofamesh.chain import Handler, completed
from sofamesh.clock import Clock
from sofamesh.codecs.grpc import (
    CONTENT_TYPE,
    GrpcStatus,
    code_of,
    code_of_reset,
    encode_message,
)
from sofamesh.codecs.grpc_heads import (
    TRAILERS_ONLY_HEAD,
    forwardable,
    outcome_of,
    read_request,
    request_headers,
    status_trailers,
)
from sofamesh.codecs.h2 import INTERNAL_ERROR, RawHeaders
from sofamesh.config.model import LimitsConfig, PolicyConfig
from sofamesh.filters.timeout import timed_out
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.protocols.base import Route
from sofamesh.protocols.h2.call import (
    H2StreamSink,
    H2StreamSource,
    NotReplayable,
    ReplayableBody,
    StreamCall,
    StreamReply,
)
from sofamesh.protocols.h2.relay import CallerGone, relay
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.h2.stream import DeadlineExpired, H2Stream, StreamResetError
from sofamesh.protocols.h2.support import H2Support
from sofamesh.security.spiffe import app_of
from sofamesh.transport.errors import TransportError, failure_of
from sofamesh.transport.tls import ALPN_H2, ClientTls

log = logging.getLogger("sofamesh.grpc")
_CANCELLED = int(GrpcStatus.CANCELLED)  # a call whose caller left before its answer was delivered

Select = Callable[[Invocation], Handler | None]


class GrpcListener:
    """Serves gRPC streams: each one an invocation through the chain `select` gives for it.

    `caller`: the app this listener vouches for (outbound), or None to trust
    the `x-sofamesh-caller` field (inbound), unless the connection is mutual
    TLS: then the caller is the peer's verified SPIFFE ID, whatever it
    declared. `enforce_deadline`: end the call at its deadline here (inbound,
    where no `TimeoutFilter` runs). Alone it is a gRPC-only server's handler;
    on a mesh listener, `H2Listener` hands it only the streams `is_grpc` matches.
    """

    def __init__(
        self,
        select: Select,
        clock: Clock,
        *,
        caller: str | None = None,
        enforce_deadline: bool = False,
    ) -> None:
        self._select = select
        self._clock = clock
        self._caller = caller
        self._enforce_deadline = enforce_deadline
        self._scope: type[anyio.CancelScope] | None = None

    async def __call__(self, stream: H2Stream) -> None:
        assert stream.headers is not None
        head = read_request(stream.headers)
        if not head.is_grpc:  # gRPC over HTTP/2 spec: a non-gRPC content-type is a 415
            await stream.send_headers([(b":status", b"415")], end_stream=True)
            return
        call = StreamCall(
            head.path, head.authority, ReplayableBody(H2StreamSource(stream)), H2StreamSink(stream)
        )
        caller = self._caller if self._caller is not None else head.caller
        deadline = None if head.timeout is None else self._clock.now() + head.timeout
        metadata = Headers.from_lower(list(head.metadata))  # the head is shared
        # Positional: the model's keyword construction costs more per call.
        inv = Invocation("grpc", head.service, head.path, metadata, caller, deadline, "", call)
        if self._caller is None and stream.conn.identity:  # inbound over mutual TLS
            inv.caller, inv.peer = app_of(stream.conn.identity), stream.conn.identity
        chain = self._chain_of(inv, head.refused)
        try:
            if isinstance(chain, Result):
                result: Result | None = chain
            else:
                stream.on_reset = stream.cancel_handler  # the caller's reset ends the call
                result = await self._run(chain, inv, stream)
                stream.on_reset = None
        finally:
            call.body.close()  # what a retry could have needed leaves the buffer budget
        if result is not None:
            await finish(stream, call, result)

    def _chain_of(self, inv: Invocation, refused: str) -> Handler | Result:
        """The chain to call, or the answer of a call refused before any chain."""
        if refused:
            return _refused(refused)
        if not inv.service:
            return Result.failure(Status.BAD_REQUEST, "the request names no service")
        chain = self._select(inv)
        if chain is None:
            return Result.failure(Status.NO_ENDPOINT, f"service {inv.service} is not served here")
        return chain

    async def _run(self, chain: Handler, inv: Invocation, stream: H2Stream) -> Result | None:
        """The chain's result, or None if the caller reset the stream meanwhile.

        The caller's reset cancels the whole handler, through the scope of the worker
        that runs it (`H2Stream.cancel_handler`); a scope of its own only for a deadline
        this listener enforces."""
        if not self._enforce_deadline or inv.deadline is None:
            try:
                return await chain(inv)
            except Exception:
                log.exception("gRPC call to %s failed inside the mesh", inv.method)
                return Result.failure(Status.INTERNAL, f"{inv.service}: internal mesh error")
        deadline = anyio.current_time() + inv.deadline - self._clock.now()
        if self._scope is None:  # the backend's class: anyio.CancelScope looks it up per call
            self._scope = type(anyio.CancelScope())
        with self._scope(deadline=deadline):
            try:
                return await chain(inv)
            except Exception:
                log.exception("gRPC call to %s failed inside the mesh", inv.method)
                return Result.failure(Status.INTERNAL, f"{inv.service}: internal mesh error")
        if stream.error is not None:
            return None  # the caller reset the stream: nobody to answer
        return Result.failure(Status.TIMEOUT, f"deadline of {inv.method} passed")


def _refused(reason: str) -> Result:
    """A request whose :path and x-sofamesh-service disagree (codecs.grpc_heads.read_request)."""
    log.warning("gRPC request refused: %s", reason)
    result = Result.failure(Status.BAD_REQUEST, reason)
    result.code = int(GrpcStatus.INVALID_ARGUMENT)
    return result


def finish(stream: H2Stream, call: StreamCall, result: Result) -> Awaitable[None]:
    """End the caller's stream with the provider's trailers or the mesh's own status."""
    sink = call.sink
    reply = result.payload
    if isinstance(reply, StreamReply):  # the stream's own coroutine: no frame around it
        if reply.trailers_only and not sink.committed:
            return stream.send_headers(forwardable(reply.headers), end_stream=True)
        if sink.committed:
            trailers = forwardable(reply.trailers)
            return stream.send_trailers(trailers or status_trailers(result.code, result.detail))
    return _finish_here(stream, call, result)


async def _finish_here(stream: H2Stream, call: StreamCall, result: Result) -> None:
    """End the caller's stream with a status the mesh made (or reset it mid-response)."""
    if stream.error is not None:
        return  # the caller reset the stream, or its connection is gone: nobody to answer
    sink = call.sink
    reply = result.payload
    if sink.committed and result.status is Status.UPSTREAM_RESET:
        stream.reset(INTERNAL_ERROR)  # mid-response: the caller must not take it as complete
        return
    ok = result.status is Status.OK
    code = code_of(result.status, result.code)
    detail = result.detail if ok or result.detail else f"{call.path}: {result.status.value}"
    trailers = status_trailers(code, detail, None if ok else result.status)
    if sink.committed:
        await stream.send_trailers(trailers)
    elif ok and isinstance(reply, bytes) and reply:  # a rule's static answer: one message
        await stream.send_headers(TRAILERS_ONLY_HEAD)
        await stream.send_data(encode_message(reply))
        await stream.send_trailers(trailers)
    else:
        await stream.send_headers(TRAILERS_ONLY_HEAD + trailers, end_stream=True)


def is_grpc(headers: RawHeaders) -> bool:
    """A gRPC request: content-type application/grpc[+codec] (the last one, as `read_request`;
    looked for from the end, where a request's head usually has it)."""
    for k, v in reversed(headers):
        if k == b"content-type":
            return v == _GRPC_TYPE or v.startswith(_GRPC_CODEC)
    return False


_GRPC_TYPE = CONTENT_TYPE.encode()
_GRPC_CODEC = _GRPC_TYPE + b"+"


class GrpcSupport:
    """`ProtocolSupport` for gRPC: its stream handler plugged into the h2 listener, and a relay.

    It builds on `H2Support`: its listeners are h2's (one port for gRPC, h2c and
    HTTP/1.1), and it relays calls over h2's pool of HTTP/2 connections.
    """

    name = "grpc"
    enforces_deadline = True  # the relay holds the call to its deadline (`relay.py`)
    gateway_codes = frozenset({14})  # UNAVAILABLE
    endpoint_protocols = frozenset({"grpc"})
    health_probe = None
    alpn: tuple[str, ...] = ALPN_H2

    def __init__(self, policy: PolicyConfig, clock: Clock, h2: H2Support) -> None:
        self._clock = clock
        self._h2 = h2
        self.pool = h2.pool  # one set of HTTP/2 connections per endpoint, owned by h2
        h2.plug(self)

    def use_tls(self, client: ClientTls) -> None:
        return None  # its connections are h2's, which the runtime secures itself

    async def __aenter__(self) -> GrpcSupport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    matches = staticmethod(is_grpc)  # the listener calls it per stream: no method around it

    def outbound_streams(self, chain: Handler, app: str) -> GrpcListener:
        return GrpcListener(lambda _inv: chain, self._clock, caller=app)

    def inbound_streams(self, route: Route) -> GrpcListener:
        return GrpcListener(lambda inv: route(inv.service), self._clock, enforce_deadline=True)

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> H2Server:
        return self._h2.outbound_server(chain, app, limits)

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> H2Server:
        return self._h2.inbound_server(route, limits)

    def send(self, host: str, port: int, inv: Invocation) -> Awaitable[Result]:
        """The relay's coroutine, returned: no frame of its own around the call."""
        call = inv.payload
        if not isinstance(call, StreamCall):
            detail = "a gRPC invocation needs a StreamCall"
            return completed(Result.failure(Status.BAD_REQUEST, detail))
        if call.sink.committed:  # a retry after the caller saw a response cannot happen
            last = call.last_result
            return completed(last or Result.failure(Status.UPSTREAM_RESET, "already answered"))
        timeout = None
        if inv.deadline is not None:
            timeout = inv.deadline - self._clock.now()
            if timeout <= 0:
                detail = f"deadline for {inv.service} passed before the call"
                return completed(Result.failure(Status.TIMEOUT, detail))
        headers = request_headers(
            call.path,
            call.authority,
            inv.headers.items(),
            service=inv.service,
            caller=inv.caller,
            timeout=timeout,
        )
        return self._relay(host, port, headers, inv, call, timeout)

    async def _relay(
        self,
        host: str,
        port: int,
        headers: list[tuple[bytes, bytes]],
        inv: Invocation,
        call: StreamCall,
        timeout: float | None,
    ) -> Result:
        """The relayed call's result, kept as the call's latest."""
        try:
            reply = await relay(self.pool, host, port, headers, call, timeout)
        except DeadlineExpired:
            assert timeout is not None
            result = timed_out(inv, timeout)
        except CallerGone:
            # The provider answered; the caller left before it had all of it (gRPC's
            # CANCELLED): no failure of the provider's, nor a reason to try again.
            result = Result(Status.OK, _CANCELLED, None, None, f"{inv.service}: the caller left")
        except (NotReplayable, StreamResetError, TransportError) as e:
            result = _failure(e, call, inv.service, host, port)
        else:
            out = outcome_of(reply.headers, reply.trailers)
            result = Result(out.status, out.code, Headers.from_lower(list(out.fields)), reply,
                            out.message)  # fmt: skip
        call.last_result = result
        return result


def _failure(e: Exception, call: StreamCall, service: str, host: str, port: int) -> Result:
    """The result of a relay that failed with `e`."""
    where = f"{service}: {host}:{port}"
    if isinstance(e, NotReplayable):
        return call.last_result or Result.failure(Status.UPSTREAM_RESET, f"{where}: {e}")
    if isinstance(e, StreamResetError):
        if e.refused:  # REFUSED_STREAM or past GOAWAY: never processed (RFC 9113 §8.7)
            return Result.failure(Status.CONNECT_FAILED, f"{where} refused the stream")
        res = Result.failure(Status.UPSTREAM_RESET, f"{where} reset the stream: {e}")
        res.code = int(code_of_reset(e.error_code))
        return res
    assert isinstance(e, TransportError)
    return failure_of(e, service, host, port)
