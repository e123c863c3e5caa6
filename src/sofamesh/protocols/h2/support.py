"""Plain HTTP over HTTP/2 (h2c) in the mesh: `H2Support`, the protocol `h2` of listener configs.

Its listeners are the gRPC ones (`protocols.grpc.mesh_server`): one port takes
HTTP/1.1, h2c and gRPC. Plain HTTP requests become the same invocations as
HTTP/1.1 ones (protocol "http" outbound, so any HTTP provider is reachable),
and an inbound call goes on to the app over h2c (protocol "h2", sent by
`send` here). gRPC requests on these listeners are proxied as gRPC.
"""

from __future__ import annotations

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.config.model import LimitsConfig, PolicyConfig
from sofamesh.model import Invocation, Result
from sofamesh.protocols.base import Route
from sofamesh.protocols.grpc.support import GrpcSupport
from sofamesh.protocols.h2.http import send_http
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.http.mapping import invocation_to_request, response_to_result
from sofamesh.transport.errors import TransportError, failure_of

MAX_RESPONSE_BODY = 16 * 1024 * 1024


class H2Support:
    """`ProtocolSupport` for h2c: the gRPC listeners, and an HTTP/2 client for buffered HTTP."""

    name = "h2"
    enforces_deadline = False  # Runtime.send holds the call to its deadline

    def __init__(self, policy: PolicyConfig, clock: Clock, grpc: GrpcSupport) -> None:
        self._clock = clock
        self._grpc = grpc  # shares its pool: one set of HTTP/2 connections per endpoint

    async def __aenter__(self) -> H2Support:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> H2Server:
        return self._grpc.outbound_server(chain, app, limits)

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> H2Server:
        return self._grpc.inbound_server(route, limits)

    async def send(self, host: str, port: int, inv: Invocation) -> Result:
        req = invocation_to_request(inv, self._clock.now())
        try:
            resp = await send_http(self._grpc.pool, host, port, req, MAX_RESPONSE_BODY)
        except TransportError as e:
            return failure_of(e, inv.service, host, port)
        return response_to_result(resp)
