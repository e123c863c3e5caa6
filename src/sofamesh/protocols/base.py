"""What a protocol brings to the mesh: listeners on both sides and a client.

Each protocol (HTTP/1.1 now; Bolt, gRPC next) is one `ProtocolSupport`
object, registered by name in `sofamesh.protocols.PROTOCOLS`. The runtime,
the SDK and the sidecar only speak to this interface, so adding a protocol
adds a module here and a codec under `codecs/`, and changes no chain.

- `outbound_server(chain, app, limits)`: a listener where the local app sends
  calls into the mesh; every request becomes an `Invocation` run through
  `chain`, and its `Result` goes back in the protocol's own terms.
- `inbound_server(route, limits)`: a listener where remote callers reach this
  app's services; `route(service)` gives the chain that ends at the app.
- `send(host, port, inv)`: the client terminal, sending an invocation to one
  endpoint (connection pooling, multiplexing and heartbeats are its business).
  A support whose `enforces_deadline` is true answers `Status.TIMEOUT` by
  `inv.deadline` itself; for the others `Runtime.send` holds the call to it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import anyio.abc

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.config.model import LimitsConfig
from sofamesh.model import Invocation, Result

Route = Callable[[str], Handler | None]


class Server(Protocol):
    async def serve(
        self, listener: Any, *, task_status: anyio.abc.TaskStatus[None] = ...
    ) -> None: ...

    async def drain(self) -> None: ...


class ProtocolSupport(AbstractAsyncContextManager["ProtocolSupport"], Protocol):
    name: str
    enforces_deadline: bool

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> Server: ...

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> Server: ...

    async def send(self, host: str, port: int, inv: Invocation) -> Result: ...


ProtocolFactory = Callable[[Any, Clock], ProtocolSupport]
