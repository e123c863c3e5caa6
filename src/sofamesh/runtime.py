"""The parts every mesh process shares: registry, clusters, pools, stats, chains.

Both front doors build on one `Runtime`: the SDK (`sofamesh.sdk.Mesh`) and the
sidecar (`sofamesh.sidecar.Sidecar`). Composition of the chains lives here, in
one place, each filter with a line on why it sits where it does.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from sofamesh.chain import Filter, Handler, build_chain
from sofamesh.clock import Clock, MonotonicClock
from sofamesh.cluster import ClusterManager
from sofamesh.config.model import MeshConfig, PolicyConfig
from sofamesh.filters import (
    BalanceFilter,
    ConnectRetryFilter,
    InboundDeadlineFilter,
    StatsFilter,
    TimeoutFilter,
)
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols import ProtocolSupport, make_protocols
from sofamesh.registry import open_registry
from sofamesh.stats import Stats


class Runtime:
    """Opened with `async with Runtime(config) as rt:`; owns every background task it starts."""

    def __init__(self, config: MeshConfig, *, clock: Clock | None = None, registry: Any = None):
        self.config = config
        self.clock: Clock = clock or MonotonicClock()
        self.stats = Stats()
        self._registry_override = registry
        self.registry: Any = None
        self.clusters: ClusterManager | None = None
        self.protocols: dict[str, ProtocolSupport] = make_protocols(config.policy, self.clock)
        self._stack = AsyncExitStack()

    def policy_for(self, service: str) -> PolicyConfig:
        return self.config.policy_for(service)

    async def __aenter__(self) -> Runtime:
        stack = self._stack
        await stack.__aenter__()
        try:
            for proto in self.protocols.values():
                await stack.enter_async_context(proto)
            if self.config.mode == "sdk" or self._registry_override is not None:
                reg = self._registry_override or open_registry(self.config.registry)
                self.registry = await stack.enter_async_context(reg)
                self.clusters = await stack.enter_async_context(
                    ClusterManager(self.registry, self.policy_for, self.stats, self.clock)
                )
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(et, e, tb)

    # -- chains -----------------------------------------------------------------------------

    def outbound_chain(self, extra: list[Filter] | None = None) -> Handler:
        """Caller side, calling providers directly (SDK mode, and the sidecar's outbound)."""
        assert self.clusters is not None, "outbound calls need a registry (sdk mode or a sidecar)"
        filters: list[Filter] = [
            StatsFilter(
                self.stats, "outbound", self.clock
            ),  # every call counted, whatever happens below
            *(extra or []),  # governance rules (routing, limits, breakers) slot in here
            TimeoutFilter(self.policy_for, self.clock),  # one deadline across all retries
            ConnectRetryFilter(self.policy_for, self.stats),  # a new attempt picks a new endpoint
            BalanceFilter(self.clusters, self.clock),  # choose the endpoint, feed outlier ejection
        ]
        return build_chain(filters, self.upstream)

    def inbound_chain(self, terminal: Handler, extra: list[Filter] | None = None) -> Handler:
        """Provider side: in front of the local app (an ASGI app or a TCP upstream)."""
        filters: list[Filter] = [
            StatsFilter(self.stats, "inbound", self.clock),
            InboundDeadlineFilter(self.clock),  # do not start work the caller gave up on
            *(extra or []),
        ]
        return build_chain(filters, terminal)

    # -- terminals --------------------------------------------------------------------------

    async def upstream(self, inv: Invocation) -> Result:
        """The outbound terminal: send `inv` to `inv.endpoint` in its protocol."""
        ep = inv.endpoint
        assert ep is not None
        return await self.send(ep.host, ep.port, inv)

    async def send(self, host: str, port: int, inv: Invocation) -> Result:
        """Send `inv` to one address with the client of `inv.protocol`."""
        proto = self.protocols.get(inv.protocol)
        if proto is None:
            return Result.failure(Status.BAD_REQUEST, f"protocol {inv.protocol!r} is not supported")
        return await proto.send(host, port, inv)
