"""Dubbo 2 in the mesh: listener handlers, the client terminal, and their `ProtocolSupport`.

- `OutboundDubboHandler`: the local app (a Dubbo consumer) calls a mesh service through
  this listener; the request's head names it (`group/path:version`), the outbound chain
  finds a provider, and the reply goes back under the app's own request id.
- `InboundDubboHandler`: remote callers reach this app's services; the inbound chain runs
  under the caller's `timeout`, then the terminal hands the call to the app.

`DubboSupport` also plugs into the HTTP/2 listener (`protocols.h2`), which sniffs each
connection: one opening with Dubbo's magic goes to the Dubbo server made for that
listener, so an `h2` port serves HTTP/1.1, h2c, gRPC and Dubbo.

Neither decodes arguments (`sofamesh.protocols.dubbo.mapping`). Heartbeats never reach
them; the server answers. Every two-way request gets a response, mesh failures included.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import anyio

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.codecs.bolt.matcher import Match
from sofamesh.codecs.dubbo import (
    DubboLimits,
    LocalProtocolError,
    RequestFrame,
    ResponseFrame,
    match,
)
from sofamesh.codecs.dubbo.wire import MAX_INT_LENGTH
from sofamesh.config.model import LimitsConfig, PolicyConfig
from sofamesh.filters.timeout import timed_out
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.base import Route
from sofamesh.protocols.dubbo.client import CallTimeoutError
from sofamesh.protocols.dubbo.mapping import (
    BadCall,
    error_response,
    invocation_to_frame,
    request_to_invocation,
    response_to_result,
    result_to_response,
    timeout_ms,
)
from sofamesh.protocols.dubbo.pool import DubboPool, DubboPoolConfig
from sofamesh.protocols.dubbo.probe import dubbo_probe
from sofamesh.protocols.dubbo.server import DubboConnInfo, DubboHandler, DubboServer
from sofamesh.security.spiffe import app_of
from sofamesh.transport.errors import TransportError, failure_of
from sofamesh.transport.tls import ClientTls

if TYPE_CHECKING:
    from sofamesh.protocols.h2.support import H2Support

log = logging.getLogger("sofamesh.listeners")


def _refuse(frame: RequestFrame, error: BadCall, peer: str) -> ResponseFrame | None:
    log.warning("dubbo request %d from %s refused: %s", frame.request_id, peer, error)
    return error_response(frame, Status.BAD_REQUEST, str(error)) if frame.two_way else None


class OutboundDubboHandler:
    """The local app's calls into the mesh."""

    def __init__(self, chain: Handler, app: str, clock: Clock) -> None:
        self._chain = chain
        self._app = app
        self._clock = clock

    async def __call__(self, frame: RequestFrame, conn: DubboConnInfo) -> ResponseFrame | None:
        try:
            inv = request_to_invocation(frame)
        except BadCall as exc:
            return _refuse(frame, exc, conn.peer)
        inv.caller = self._app  # the sidecar vouches for its own app's identity
        if ms := timeout_ms(inv):
            inv.deadline = self._clock.now() + ms / 1000
        result = await self._chain(inv)
        return result_to_response(result, frame) if frame.two_way else None


class InboundDubboHandler:
    """Serves the services routed to this listener; `route(service)` finds the app's chain."""

    def __init__(self, route: Route, clock: Clock) -> None:
        self._route = route
        self._clock = clock

    async def __call__(self, frame: RequestFrame, conn: DubboConnInfo) -> ResponseFrame | None:
        try:
            inv = request_to_invocation(frame)
        except BadCall as exc:
            return _refuse(frame, exc, conn.peer)
        if conn.identity:  # mutual TLS: the caller is the verified peer, whatever it declared
            inv.caller, inv.peer = app_of(conn.identity), conn.identity
        chain = self._route(inv.service)
        if chain is None:
            detail = f"service {inv.service or '(none named)'} is not served here"
            return error_response(frame, Status.NO_ENDPOINT, detail)
        result = await self._run(chain, inv, timeout_ms(inv))
        return result_to_response(result, frame) if frame.two_way else None

    async def _run(self, chain: Handler, inv: Invocation, ms: int) -> Result:
        """The chain under the caller's deadline: work it gave up on is cancelled."""
        budget = ms / 1000 if ms > 0 else float("inf")
        if ms > 0:
            inv.deadline = self._clock.now() + budget
        try:
            with anyio.move_on_after(budget):
                return await chain(inv)
        except Exception:
            log.exception("inbound dubbo call to %s failed inside the mesh", inv.service)
            return Result.failure(Status.INTERNAL, f"{inv.service}: internal error in the mesh")
        return Result.failure(
            Status.TIMEOUT, f"{inv.service}.{inv.method}: the caller's {ms} ms ran out"
        )


class DubboSupport:
    """`ProtocolSupport` for Dubbo 2: servers for both listener kinds and one client pool."""

    name = "dubbo"
    enforces_deadline = True  # the pool gives up at the call's deadline, without a cancel scope
    # Refused before the provider ran: not found there, or its thread pool was full.
    gateway_codes = frozenset({60, 100})
    endpoint_protocols = frozenset({"dubbo"})
    health_probe = staticmethod(dubbo_probe)
    alpn: tuple[str, ...] = ()

    def __init__(
        self,
        policy: PolicyConfig,
        clock: Clock,
        h2: H2Support | None = None,
        *,
        pool: DubboPoolConfig | None = None,
    ) -> None:
        self._clock = clock
        if h2 is not None:  # HTTP/2 listeners take Dubbo connections too, by their magic
            h2.plug_connections(self)
        self.pool = DubboPool(
            pool
            or DubboPoolConfig(
                connect_timeout=policy.connect_timeout, idle_timeout=policy.pool_idle_timeout
            )
        )

    @staticmethod
    def matches_connection(prefix: bytes) -> bool | None:
        """Whether a connection's first bytes are a Dubbo request (None: too few yet)."""
        found = match(prefix)
        return None if found is Match.NEED_MORE else bool(found)

    def use_tls(self, client: ClientTls) -> None:
        """Call the endpoints that publish mTLS over it (offering `alpn`)."""
        self.pool.connect = client.connector(self.alpn)

    async def __aenter__(self) -> DubboSupport:
        await self.pool.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.__aexit__(*exc)  # type: ignore[arg-type]

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> DubboServer:
        return dubbo_server(OutboundDubboHandler(chain, app, self._clock), limits)

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> DubboServer:
        return dubbo_server(InboundDubboHandler(route, self._clock), limits)

    async def send(self, host: str, port: int, inv: Invocation) -> Result:
        at, remaining = math.inf, math.inf
        if inv.deadline is not None:  # on the mesh's clock; the pool waits on anyio's
            remaining = inv.deadline - self._clock.now()
            if remaining <= 0:
                return Result.failure(
                    Status.TIMEOUT, f"deadline for {inv.service} passed before the call"
                )
            at = anyio.current_time() + remaining
        try:
            frame = invocation_to_frame(inv)
            if not frame.two_way:
                with anyio.CancelScope(deadline=at):
                    await self.pool.send_oneway(host, port, frame)
                    return Result(Status.OK)
                return timed_out(inv, remaining)
            resp = await self.pool.call(host, port, frame, at)
        except CallTimeoutError:
            return timed_out(inv, remaining)
        except TransportError as e:
            return failure_of(e, inv.service, host, port)
        except LocalProtocolError as e:
            return Result.failure(Status.BAD_REQUEST, f"{inv.service}: cannot send: {e}")
        return response_to_result(resp)


def dubbo_limits(limits: LimitsConfig | None) -> DubboLimits:
    """The decoder limits of a listener."""
    cfg = limits or LimitsConfig()
    return DubboLimits(max_body_size=min(cfg.max_body_bytes, MAX_INT_LENGTH))


def dubbo_server(handler: DubboHandler, limits: LimitsConfig | None) -> DubboServer:
    """A Dubbo server for a listener, with the listener's configured limits."""
    cfg = limits or LimitsConfig()
    return DubboServer(
        handler, dubbo_limits(cfg), max_connections=cfg.max_connections,
        idle_timeout=cfg.idle_timeout, frame_timeout=cfg.frame_timeout,
        frame_progress_timeout=cfg.frame_progress_timeout,
    )  # fmt: skip
