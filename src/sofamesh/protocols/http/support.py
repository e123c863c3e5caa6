"""HTTP/1.1 in the mesh: listener handlers, the client terminal, and their `ProtocolSupport`.

- `OutboundHttpHandler`: the local app (or a plain HTTP client) calls a mesh
  service through this listener; the request names its service by `Host`
  or `x-sofamesh-service`, and the outbound chain finds a provider.
- `InboundHttpHandler`: remote callers reach this app's services; the inbound
  chain runs, then the terminal hands the call to the app (a TCP upstream in
  the sidecar, an ASGI app in the SDK).

Both return an `HttpResponse` for every request, mesh failures included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.codecs.http1 import BodyStream, Http1Limits, HttpRequest, HttpResponse
from sofamesh.config.model import LimitsConfig, PolicyConfig
from sofamesh.filters.timeout import timed_out
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.http.mapping import (
    error_response,
    invocation_to_request,
    parse_timeout_ms,
    request_to_invocation,
    response_to_result,
    result_to_response,
)
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.protocols.http.probe import http_probe
from sofamesh.protocols.http.relay import BodyTruncated
from sofamesh.protocols.http.server import ConnInfo, Http1Handler, Http1Server
from sofamesh.transport.budget import OVERLOAD, Overload
from sofamesh.transport.errors import TransportError, failure_of
from sofamesh.transport.tls_names import ALPN_HTTP1

if TYPE_CHECKING:  # TLS itself loads with a `tls:` config (runtime.py)
    from sofamesh.transport.tls import ClientTls

log = logging.getLogger("sofamesh.listeners")

_SHADOW_HEADER = "x-sofamesh-shadow"  # governance/filters/mirror.py marks its copies so


class OutboundHttpHandler:
    def __init__(self, chain: Handler, app: str) -> None:
        self._chain = chain
        self._app = app

    async def __call__(self, req: HttpRequest, _conn: ConnInfo | None = None) -> HttpResponse:
        inv = request_to_invocation(req)
        if not inv.service:
            return error_response(
                Status.BAD_REQUEST,
                "request names no service: set the Host header or x-sofamesh-service",
            )
        inv.caller = self._app  # the sidecar vouches for its own app's identity
        result = await self._chain(inv)
        return result_to_response(result, inv.service)


class InboundHttpHandler:
    """Serves the services routed to this listener; `route(service)` finds the app's handler."""

    def __init__(self, route: Callable[[str], Handler | None], clock: Clock) -> None:
        self._route = route
        self._clock = clock

    async def __call__(self, req: HttpRequest, _conn: ConnInfo | None = None) -> HttpResponse:
        # `dispatch` inline: a plaintext request costs no frame more than before mTLS existed.
        inv = request_to_invocation(req)
        chain = self._route(inv.service)
        if chain is None:
            detail = f"service {inv.service or '(none named)'} is not served here"
            return error_response(Status.NO_ENDPOINT, detail)
        timeout = parse_timeout_ms(inv.headers)
        if timeout is not None:
            inv.deadline = self._clock.now() + timeout
        try:
            result = await chain(inv)
        except Exception:
            log.exception("inbound call to %s failed inside the mesh", inv.service)
            result = Result.failure(Status.INTERNAL, f"{inv.service}: internal error in the mesh")
        return result_to_response(result, inv.service)

    async def dispatch(self, inv: Invocation) -> HttpResponse:
        """`__call__` from the invocation on (a verified connection's requests come here)."""
        chain = self._route(inv.service)
        if chain is None:
            detail = f"service {inv.service or '(none named)'} is not served here"
            return error_response(Status.NO_ENDPOINT, detail)
        timeout = parse_timeout_ms(inv.headers)
        if timeout is not None:
            inv.deadline = self._clock.now() + timeout
        try:
            result = await chain(inv)
        except Exception:
            log.exception("inbound call to %s failed inside the mesh", inv.service)
            result = Result.failure(Status.INTERNAL, f"{inv.service}: internal error in the mesh")
        return result_to_response(result, inv.service)

    def for_peer(self, identity: str) -> VerifiedHttpHandler:
        """This handler for a connection whose caller mutual TLS verified as `identity`."""
        return VerifiedHttpHandler(self, identity)


class VerifiedHttpHandler:
    """An inbound handler on a mutual-TLS connection: the caller is the peer's verified ID.

    Whatever `x-sofamesh-caller` the request carries is replaced by the app
    the peer's SPIFFE ID names (`inv.caller`), and the ID itself is `inv.peer`.
    """

    def __init__(self, inbound: InboundHttpHandler, identity: str) -> None:
        from sofamesh.security.spiffe import app_of  # with mutual TLS only

        self._inbound = inbound
        self._identity = identity
        self._app = app_of(identity)

    async def __call__(self, req: HttpRequest, conn: ConnInfo | None = None) -> HttpResponse:
        inv = request_to_invocation(req)
        inv.caller, inv.peer = self._app, self._identity
        return await self._inbound.dispatch(inv)


class HttpSupport:
    """`ProtocolSupport` for HTTP/1.1: h11 servers and one client pool per mesh process."""

    name = "http"
    enforces_deadline = True  # the pool gives up at the call's deadline, without a cancel scope
    gateway_codes = frozenset({502, 503, 504})
    endpoint_protocols = frozenset({"http"})
    health_probe = staticmethod(http_probe)
    alpn: tuple[str, ...] = ALPN_HTTP1

    def __init__(self, policy: PolicyConfig, clock: Clock) -> None:
        self._clock = clock
        self.pool = Http1Pool(
            connect_timeout=policy.connect_timeout,
            max_connections_per_endpoint=policy.max_connections_per_endpoint,
            idle_timeout=policy.pool_idle_timeout,
        )

    def use_tls(self, client: ClientTls) -> None:
        """Call the endpoints that publish mTLS over it (offering `alpn`)."""
        self.pool.connect = client.connector(self.alpn)

    async def __aenter__(self) -> HttpSupport:
        await self.pool.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.__aexit__(*exc)  # type: ignore[arg-type]

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> Http1Server:
        return http1_server(OutboundHttpHandler(chain, app), limits)

    def inbound_server(
        self, route: Callable[[str], Handler | None], limits: LimitsConfig | None
    ) -> Http1Server:
        return http1_server(InboundHttpHandler(route, self._clock), limits)

    async def send(self, host: str, port: int, inv: Invocation) -> Result:
        now = self._clock.now()
        timeout = None if inv.deadline is None else inv.deadline - now
        if timeout is not None and timeout <= 0:
            return Result.failure(
                Status.TIMEOUT, f"deadline for {inv.service} passed before the call"
            )
        req = invocation_to_request(inv, now)
        if req.stream is not None:
            refused = self._refuse_upload(inv, req.stream)
            if refused is not None:
                return refused
        try:
            resp = await self.pool.send(host, port, req, timeout)
        except TimeoutError:
            assert timeout is not None
            return timed_out(inv, timeout)
        except TransportError as e:
            return failure_of(e, inv.service, host, port)
        except BodyTruncated as e:
            return Result.failure(Status.BAD_REQUEST, f"{inv.service}: {e}")
        if resp.stream is not None and inv.headers.get(_SHADOW_HEADER):
            await resp.stream.aclose()  # nobody reads a mirrored call's answer
        return response_to_result(resp)

    @staticmethod
    def _refuse_upload(inv: Invocation, body: BodyStream) -> Result | None:
        """A streamed request body is sent once: a retry after its first piece, or a
        mirrored copy (which would read the caller's body from under it), is refused."""
        # Not safe to repeat from here on, whatever the method: a retry policy for
        # resets and timeouts then leaves it alone (connect failures sent nothing).
        inv.idempotent = False
        if inv.headers.get(_SHADOW_HEADER):
            return Result.failure(Status.BAD_REQUEST, "a streamed request body is not mirrored")
        if getattr(body, "started", False):
            detail = f"{inv.service}: a streamed request body cannot be sent again"
            return Result.failure(Status.UPSTREAM_RESET, detail)
        return None


def http1_server(
    handler: Http1Handler,
    limits: LimitsConfig | None,
    *,
    overload: Overload = OVERLOAD,
    stream_bodies: bool = True,
) -> Http1Server:
    """An HTTP/1.1 server for a listener, with the listener's configured limits; `overload`,
    the buffer budget it counts in and sheds by (the admin API's is its own).
    `stream_bodies=False`: every body is buffered, for a handler that reads `body` itself."""
    cfg = limits or LimitsConfig()
    codec_limits = Http1Limits(
        max_header_bytes=cfg.max_header_bytes,
        max_body_size=cfg.max_body_bytes,
        path_with_escaped_slashes_action=cfg.path_with_escaped_slashes_action,
        stream_threshold=cfg.stream_threshold_bytes if stream_bodies else 0,
    )
    return Http1Server(
        handler,
        codec_limits,
        max_connections=cfg.max_connections,
        keepalive_timeout=cfg.idle_timeout,
        header_timeout=cfg.header_timeout,
        send_timeout=cfg.send_timeout,
        max_connections_per_source=cfg.max_connections_per_source,
        overload=overload,
    )
