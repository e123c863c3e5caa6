"""What a protocol brings to the mesh: listeners on both sides, a client, and its decisions.

Each protocol is one `ProtocolSupport` class, registered by name in
`sofamesh.protocols.PROTOCOLS`. The runtime, the SDK, the sidecar, config,
clusters, retries and health checks only speak to this interface and the
registry, so adding a protocol adds a slice and a codec under `codecs/`, and
changes no chain and no list of names elsewhere.

- `outbound_server(chain, app, limits)`: a listener where the local app sends
  calls into the mesh; every request becomes an `Invocation` run through
  `chain`, and its `Result` goes back in the protocol's own terms.
- `inbound_server(route, limits)`: a listener where remote callers reach this
  app's services; `route(service)` gives the chain that ends at the app.
- `send(host, port, inv)`: the client terminal, sending an invocation to one
  endpoint (connection pooling, multiplexing and heartbeats are its business).
  A support whose `enforces_deadline` is true answers `Status.TIMEOUT` by
  `inv.deadline` itself; for the others `Runtime.send` holds the call to it.

Its decisions, as class attributes (the registry reads them without an instance):

- `gateway_codes`: the protocol codes of a gateway that could not get an
  answer (Envoy's `gateway-error` retry condition: HTTP 502/503/504).
- `endpoint_protocols`: the endpoint protocols (as registered) it can call.
- `health_probe`: its active health check (`upstream.health_check.kind` of
  its name), or None if it has none beyond TCP.
- `alpn`: the ALPN protocol names its connections offer under mutual TLS
  (`use_tls(client)` makes its client use TLS to the endpoints that take it).

Mesh-made answers (`Result` with body bytes as payload) are rendered by its
listeners; its listener limits are converted from `LimitsConfig` in its slice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

import anyio.abc

from sofamesh.chain import Handler
from sofamesh.config.model import LimitsConfig
from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation, Result

if TYPE_CHECKING:
    from sofamesh.transport.tls import ClientTls
    from sofamesh.upstream.health import HealthCheckConfig, ProbeConnect

# (endpoint, config, connect: None for plain TCP, else the runtime's, mTLS where published)
HealthProbe = Callable[[Endpoint, "HealthCheckConfig", "ProbeConnect | None"], Awaitable[bool]]
Route = Callable[[str], Handler | None]


class Server(Protocol):
    async def serve(
        self, listener: Any, *, task_status: anyio.abc.TaskStatus[None] = ...
    ) -> None: ...

    async def drain(self) -> None: ...


class ProtocolSupport(AbstractAsyncContextManager["ProtocolSupport"], Protocol):
    name: str
    enforces_deadline: bool
    gateway_codes: frozenset[int]
    endpoint_protocols: frozenset[str]
    alpn: tuple[str, ...]

    @property
    def health_probe(self) -> HealthProbe | None: ...

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> Server: ...

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> Server: ...

    async def send(self, host: str, port: int, inv: Invocation) -> Result: ...

    def use_tls(self, client: ClientTls) -> None: ...
