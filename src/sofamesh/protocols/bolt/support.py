"""SOFA Bolt in the mesh: listener handlers, the client terminal, and their `ProtocolSupport`.

- `OutboundBoltHandler`: the local app (a SOFARPC client, Java or Node) calls a mesh
  service through this listener; the `service` header names it, the outbound chain
  finds a provider, and the reply goes back under the app's own request id.
- `InboundBoltHandler`: remote callers reach this app's services; the inbound chain runs
  under the caller's deadline (the frame's timeout), then the terminal hands the call to
  the app (a Bolt upstream in the sidecar, a Python object in the SDK).

Neither decodes a body: the frame's header map is all a proxy reads (see
`sofamesh.protocols.bolt.mapping`). Heartbeats never reach these handlers; the server answers
them. Every request gets a response frame, mesh failures included; oneway requests none.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import anyio

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.codecs.bolt import (
    BoltLimits,
    LocalProtocolError,
    RequestFrame,
    ResponseFrame,
    ResponseStatus,
)
from sofamesh.codecs.bolt.wire import MAX_INT_LENGTH, MAX_SHORT_LENGTH
from sofamesh.config.model import LimitsConfig, PolicyConfig
from sofamesh.deadlines import DeadlineWatch
from sofamesh.filters.timeout import timed_out
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.base import Route
from sofamesh.protocols.bolt.client import CallTimeoutError
from sofamesh.protocols.bolt.mapping import (
    NameMismatch,
    error_response,
    invocation_of,
    outbound_request,
    refuse,
    reply_of,
    request_with,
    response_to_result,
)
from sofamesh.protocols.bolt.pool import BoltPool, BoltPoolConfig
from sofamesh.protocols.bolt.probe import bolt_probe
from sofamesh.protocols.bolt.server import BoltAnswer, BoltConnInfo, BoltHandler, BoltServer
from sofamesh.security.spiffe import app_of
from sofamesh.transport.errors import TransportError, failure_of
from sofamesh.transport.tls import ClientTls

log = logging.getLogger("sofamesh.listeners")
# Enum members read per call, bound once: `EnumType` defines `__getattr__`, so on 3.11
# `Status.OK` takes the slow attribute hook (about 1,100 instructions), where a module
# global costs about 40.
SUCCESS, OK = ResponseStatus.SUCCESS, Status.OK


class OutboundBoltHandler:
    """The local app's calls into the mesh."""

    checks_header_maps = True  # `invocation_of` reads each request's map first (server.py)

    def __init__(self, chain: Handler, app: str, clock: Clock) -> None:
        self._chain = chain
        self._app = app
        self._clock = clock

    def __call__(self, frame: RequestFrame, conn: BoltConnInfo) -> Awaitable[BoltAnswer]:
        """Not a coroutine: the chain's own awaitable, whose `Result` the server turns into
        the reply (`reply_of`), so a call runs one coroutine level fewer."""
        try:
            inv = invocation_of(frame)
        except NameMismatch as exc:
            return _answered(refuse(frame, exc, conn.peer))
        if not inv.service:
            detail = "request names no service: set the `service` header"
            return _answered(error_response(frame, Status.BAD_REQUEST, detail))
        inv.caller = self._app  # the sidecar vouches for its own app's identity
        if frame.timeout_ms > 0:
            inv.deadline = self._clock.now() + frame.timeout_ms / 1000
        return self._chain(inv)


async def _answered(answer: BoltAnswer) -> BoltAnswer:
    return answer


def _no_watch() -> DeadlineWatch | None:
    return None


class InboundBoltHandler:
    """Serves the services routed to this listener; `route(service)` finds the app's chain.

    The caller's deadline cancels the chain (work given up on stops). `watch()` gives the
    pool's `DeadlineWatch` while it runs, which arms a plain cancel scope for a heap push
    where `move_on_after` arms a timer per call; a call without a deadline takes no scope."""

    checks_header_maps = True  # `invocation_of` reads each request's map first (server.py)

    def __init__(
        self, route: Route, clock: Clock, watch: Callable[[], DeadlineWatch | None] = _no_watch
    ) -> None:
        self._route = route
        self._clock = clock
        self._watch = watch

    async def __call__(
        self, frame: RequestFrame, conn: BoltConnInfo
    ) -> ResponseFrame | bytes | None:
        try:
            inv = invocation_of(frame)
        except NameMismatch as exc:
            return refuse(frame, exc, conn.peer)
        if conn.identity:  # mutual TLS: the caller is the verified peer, whatever it declared
            inv.caller, inv.peer = app_of(conn.identity), conn.identity
        chain = self._route(inv.service)
        if chain is None:
            detail = f"service {inv.service or '(none named)'} is not served here"
            return error_response(frame, Status.NO_ENDPOINT, detail)
        result = await self._run(chain, inv, frame.timeout_ms)
        return None if frame.oneway else reply_of(result, frame)

    async def _run(self, chain: Handler, inv: Invocation, timeout_ms: int) -> Result:
        """The chain under the caller's deadline: work it gave up on is cancelled."""
        try:
            if timeout_ms <= 0:
                return await chain(inv)
            budget = timeout_ms / 1000
            inv.deadline = self._clock.now() + budget
            watch = self._watch()
            with anyio.move_on_after(budget) if watch is None else watch.cancel_after(budget):
                return await chain(inv)
        except Exception:
            log.exception("inbound bolt call to %s failed inside the mesh", inv.service)
            return Result.failure(Status.INTERNAL, f"{inv.service}: internal error in the mesh")
        return Result.failure(
            Status.TIMEOUT, f"{inv.service}.{inv.method}: the caller's {timeout_ms} ms ran out"
        )


class BoltSupport:
    """`ProtocolSupport` for Bolt: servers for both listener kinds and one client pool."""

    name = "bolt"
    enforces_deadline = True  # the pool gives up at the call's deadline, without a cancel scope
    gateway_codes = frozenset({0x0004})  # SERVER_THREADPOOL_BUSY: refused before running
    endpoint_protocols = frozenset({"bolt"})
    health_probe = staticmethod(bolt_probe)
    alpn: tuple[str, ...] = ()

    def __init__(
        self, policy: PolicyConfig, clock: Clock, pool: BoltPoolConfig | None = None
    ) -> None:
        self._clock = clock
        self.pool = BoltPool(
            pool
            or BoltPoolConfig(
                connect_timeout=policy.connect_timeout, idle_timeout=policy.pool_idle_timeout
            )
        )

    def use_tls(self, client: ClientTls) -> None:
        """Call the endpoints that publish mTLS over it (offering `alpn`)."""
        self.pool.connect = client.connector(self.alpn)

    async def __aenter__(self) -> BoltSupport:
        await self.pool.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.__aexit__(*exc)  # type: ignore[arg-type]

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> BoltServer:
        return bolt_server(OutboundBoltHandler(chain, app, self._clock), limits)

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> BoltServer:
        handler = InboundBoltHandler(route, self._clock, lambda: self.pool.deadlines)
        return bolt_server(handler, limits)

    async def send(self, host: str, port: int, inv: Invocation) -> Result:
        now = self._clock.now()
        at, remaining = math.inf, math.inf
        if inv.deadline is not None:  # on the mesh's clock; the pool waits on anyio's
            remaining = inv.deadline - now
            if remaining <= 0:
                return Result.failure(
                    Status.TIMEOUT, f"deadline for {inv.service} passed before the call"
                )
            at = self.pool.time_in(remaining)
        try:
            # The request's parts, encoded in one pass once its id is known (`begin`).
            frame, header, timeout = outbound_request(inv, now)
            if frame.oneway:
                frame = request_with(frame, header, timeout)
                with anyio.CancelScope(deadline=at):
                    await self.pool.send_oneway(host, port, frame)
                    return Result(Status.OK)
                return timed_out(inv, remaining)
            # The usual case without the pool's or the connection's coroutine: a ready
            # connection that queues the frame at once.
            conn = self.pool.ready(host, port)
            waiter = None if conn is None else conn.begin(frame, at, header, timeout)
            if conn is None or waiter is None:
                frame = request_with(frame, header, timeout)
                resp = await self.pool.call(host, port, frame, at)
            else:
                try:
                    await waiter.waker
                except BaseException:
                    conn.forget(waiter)
                    raise
                resp = conn.finish(waiter)
        except CallTimeoutError:
            return timed_out(inv, remaining)
        except TransportError as e:
            return failure_of(e, inv.service, host, port)
        except LocalProtocolError as e:
            return Result.failure(Status.BAD_REQUEST, f"{inv.service}: cannot send: {e}")
        if resp.status == SUCCESS:  # `response_to_result`'s first case, inline
            return Result(OK, SUCCESS, None, resp)  # positional: no keyword dict
        return response_to_result(resp)


def bolt_limits(limits: LimitsConfig | None) -> BoltLimits:
    """The decoder limits of a listener (the header map is a Java short at most)."""
    cfg = limits or LimitsConfig()
    return BoltLimits(
        max_body_size=min(cfg.max_body_bytes, MAX_INT_LENGTH),
        max_header_size=min(cfg.max_header_bytes, MAX_SHORT_LENGTH),
    )


def bolt_server(handler: BoltHandler, limits: LimitsConfig | None) -> BoltServer:
    """A Bolt server for a listener, with the listener's configured limits."""
    cfg = limits or LimitsConfig()
    return BoltServer(
        handler,
        bolt_limits(cfg),
        max_connections=cfg.max_connections,
        idle_timeout=cfg.idle_timeout,
        max_connections_per_source=cfg.max_connections_per_source,
        frame_timeout=cfg.frame_timeout,
        frame_progress_timeout=cfg.frame_progress_timeout,
        max_write_buffer=cfg.max_write_buffer_bytes,
    )
