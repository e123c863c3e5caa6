"""HTTP/2 (h2c) in the mesh: `H2Support`, the protocol `h2` of listener configs.

It owns the HTTP/2 listener (`listener.py`: one port for h2c, HTTP/1.1 and the
protocols plugged into it, gRPC among them) and the HTTP/2 client pool those
protocols share. Plain HTTP requests become the same invocations as HTTP/1.1
ones (protocol "http" outbound, so any HTTP provider is reachable), and an
inbound call goes on to the app over h2c (protocol "h2", sent by `send` here).
"""

from __future__ import annotations

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.config.model import LimitsConfig, PolicyConfig
from sofamesh.model import Invocation, Result
from sofamesh.protocols.base import Route
from sofamesh.protocols.h2.client import H2Pool
from sofamesh.protocols.h2.http import send_http
from sofamesh.protocols.h2.listener import ConnectionProtocol, StreamProtocol, h2_server
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.http.mapping import invocation_to_request, response_to_result
from sofamesh.protocols.http.support import InboundHttpHandler, OutboundHttpHandler
from sofamesh.transport.errors import TransportError, failure_of
from sofamesh.transport.tls import ALPN_H2, ClientTls

MAX_RESPONSE_BODY = 16 * 1024 * 1024
_SHADOW_HEADER = "x-sofamesh-shadow"  # the mirror filter's mark on its copies


class H2Support:
    """`ProtocolSupport` for h2c: the HTTP/2 listeners and pool, and a client for buffered HTTP."""

    name = "h2"
    enforces_deadline = False  # Runtime.send holds the call to its deadline
    gateway_codes = frozenset({502, 503, 504})
    endpoint_protocols = frozenset({"h2"})
    health_probe = None
    alpn: tuple[str, ...] = ALPN_H2

    def __init__(self, policy: PolicyConfig, clock: Clock) -> None:
        self._clock = clock
        self._plugged: list[StreamProtocol] = []
        self._sniffed: list[ConnectionProtocol] = []
        self.pool = H2Pool(
            connect_timeout=policy.connect_timeout,
            max_connections_per_endpoint=4,
            idle_timeout=policy.pool_idle_timeout,
        )

    def plug(self, protocol: StreamProtocol) -> None:
        """Serve the streams `protocol` matches with its handlers on every listener made after."""
        self._plugged.append(protocol)

    def plug_connections(self, protocol: ConnectionProtocol) -> None:
        """Serve the connections `protocol` claims by their first bytes on every listener made
        after, with its own servers."""
        self._sniffed.append(protocol)

    def use_tls(self, client: ClientTls) -> None:
        """Call the endpoints that publish mTLS over it (offering `alpn`)."""
        self.pool.connect = client.connector(self.alpn)

    async def __aenter__(self) -> H2Support:
        await self.pool.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.__aexit__(*exc)  # type: ignore[arg-type]

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> H2Server:
        plugs = [(p.matches, p.outbound_streams(chain, app)) for p in self._plugged]
        sniffed = [(p.matches_connection, p.outbound_server(chain, app, limits))
                   for p in self._sniffed]  # fmt: skip
        return h2_server(plugs, OutboundHttpHandler(chain, app), limits, sniffed)

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> H2Server:
        plugs = [(p.matches, p.inbound_streams(route)) for p in self._plugged]
        http = InboundHttpHandler(_as_protocol(route, "h2"), self._clock)
        sniffed = [(p.matches_connection, p.inbound_server(route, limits)) for p in self._sniffed]
        return h2_server(plugs, http, limits, sniffed)

    async def send(self, host: str, port: int, inv: Invocation) -> Result:
        req = invocation_to_request(inv, self._clock.now())
        try:
            resp = await send_http(self.pool, host, port, req, MAX_RESPONSE_BODY)
        except TransportError as e:
            return failure_of(e, inv.service, host, port)
        if resp.stream is not None and inv.headers.get(_SHADOW_HEADER):
            await resp.stream.aclose()  # nobody reads a mirrored call's answer
        return response_to_result(resp)


def _as_protocol(route: Route, protocol: str) -> Route:
    """Inbound plain HTTP on an HTTP/2 listener goes on to the app over HTTP/2 (`protocol`)."""

    def routed(service: str) -> Handler | None:
        chain = route(service)
        if chain is None:
            return None

        async def call(inv: Invocation) -> Result:
            inv.protocol = protocol
            return await chain(inv)

        return call

    return routed
