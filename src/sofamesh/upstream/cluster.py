"""Concrete level: a service resolved to endpoints, their health, and a balancer.

A `Cluster` (cluster_state.py, re-exported here) follows one service's
endpoint set from the registry and answers "which endpoint now?" A
`ClusterManager` owns one watch task per service the mesh has called, inside
its task group, and creates clusters on first use: `cluster_state.py`, with the
outlier detector and the balancers it runs, is imported by the first.

Per-name state is bounded, since any caller can name any service: a cluster
unused for a whole `idle_timeout` (and with no call in flight) is dropped with
its watch, and at most `max_clusters` exist. At the cap an idle cluster makes
room; when none is idle, the name gets a cluster that is not kept nor watched,
so the call is answered at once with `no_endpoint`.

Holding on to the last snapshot is deliberate: a registry that goes quiet or
errors never empties a cluster (see registry/base.py). Nor does one snapshot
that removes too much at once: `removals.RemovalGuard` holds such a removal for
one lease (unless the owners withdrew the endpoints), and the manager's task
ends the hold when it is due.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Set
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from sofamesh.clock import Clock
from sofamesh.registry.base import Registry
from sofamesh.stats import Stats

if TYPE_CHECKING:
    from sofamesh.upstream.cluster_state import Cluster as Cluster
    from sofamesh.upstream.cluster_state import ClusterPolicy as ClusterPolicy
    from sofamesh.upstream.health import ProbeConnect

log = logging.getLogger("sofamesh.upstream.cluster")

ALIAS_RETRY = 1.0  # seconds between case-insensitive look-ups of a name that matched nothing
MAX_CLUSTERS = 1000
CLUSTER_IDLE_TIMEOUT = 600.0  # seconds


def __getattr__(name: str) -> Any:
    # `Cluster` and `ClusterPolicy` under their old address, loaded on first use.
    if name in ("Cluster", "ClusterPolicy"):
        from sofamesh.upstream import cluster_state

        return getattr(cluster_state, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ClusterManager:
    """Creates clusters on demand and keeps each in step with the registry."""

    def __init__(
        self,
        registry: Registry,
        policy_for: Callable[[str], ClusterPolicy],
        stats: Stats,
        clock: Clock,
        *,
        protocols: Set[str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        max_clusters: int = MAX_CLUSTERS,
        idle_timeout: float = CLUSTER_IDLE_TIMEOUT,
        idle_sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """`protocols`: those the mesh can call (the runtime's); other endpoints are ignored.
        `sleep`: how the timer that ends held removals waits, `idle_sleep` the idle
        sweep's (tests pass fakes)."""
        self._registry = registry
        self.probe_connect: ProbeConnect | None = None  # mTLS probes (the runtime's, with tls:)
        self._sleep = sleep
        self._idle_sleep = idle_sleep
        self.max_clusters = max_clusters
        self.idle_timeout = idle_timeout
        self.overflowed = 0  # names answered without a cluster: the cap was full
        self.unknown = 0  # names the registry did not list, answered and forgotten
        self._protocols = frozenset(protocols) if protocols is not None else None
        self._policy_for = policy_for
        self._stats = stats
        self._clock = clock
        self.clusters: dict[str, Cluster] = {}
        self._aliases: dict[
            str, tuple[str, float]
        ] = {}  # lowercased name -> (service, resolved at)
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> ClusterManager:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._sweep_idle)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(et, e, tb)

    def get(self, service: str) -> Cluster:
        cluster = self.clusters.get(service)
        if cluster is None:
            return self._create(service)
        cluster.used = True
        return cluster

    def for_call(self, service: str) -> Cluster:
        """`get` for a call: a name the registry does not list is not kept.

        The new cluster waits for its first snapshot like any other; when that lists no
        endpoint, the cluster and its watch are dropped at once (the call is answered
        `no_endpoint`), so a made-up name leaves nothing behind.
        """
        cluster = self.clusters.get(service)
        if cluster is None:
            cluster = self._create(service)
            cluster.provisional = True
            return cluster
        cluster.used = True
        return cluster

    def _create(self, service: str) -> Cluster:
        if self._tg is None:
            raise RuntimeError("ClusterManager used outside its 'async with' block")
        from sofamesh.upstream.cluster_state import Cluster  # with the first cluster

        policy = self._policy_for(service)
        cluster = Cluster(service, policy, self._stats, self._clock, self._protocols)
        if len(self.clusters) >= self.max_clusters and not self._make_room():
            self.overflowed += 1
            if self.overflowed == 1 or self.overflowed % 1000 == 0:
                log.warning(
                    "%d clusters (max_clusters): %s not followed", len(self.clusters), service
                )
            cluster.mark_ready()  # no endpoints, never watched: no_endpoint at once
            return cluster
        self.clusters[service] = cluster
        self._tg.start_soon(self._follow, cluster)
        return cluster

    def _make_room(self) -> bool:
        """Drop one cluster not called since the last sweep; False if every one is in use."""
        for name, cluster in self.clusters.items():
            if not cluster.used and not any(cluster.active.values()):
                self._drop(name)
                return True
        return False

    def _drop(self, service: str) -> None:
        cluster = self.clusters.pop(service)
        if cluster.watch is not None:
            cluster.watch.cancel()

    async def _sweep_idle(self) -> None:
        """Every `idle_timeout`, drop the clusters nobody called since the last sweep."""
        while True:
            await self._idle_sleep(self.idle_timeout)
            for name, cluster in list(self.clusters.items()):
                if not cluster.used and not any(cluster.active.values()):
                    self._drop(name)
                cluster.used = False

    async def canonical_name(self, service: str) -> str:
        """The registered spelling of `service`, matching case-insensitively if it came lowercased.

        HTTP clients lowercase the Host header (DNS names are case-insensitive), so
        `http://com.example.Orders/` arrives as `com.example.orders`. A lowercase name
        that is not a known service is looked up among the registered services, again
        at most once a second while it finds nothing.
        """
        cluster = self.clusters.get(service)
        if service != service.lower() or (cluster is not None and cluster.endpoints):
            return service
        alias = self._aliases.get(service)
        now = self._clock.now()
        if alias is None or (alias[0] == service and now - alias[1] >= ALIAS_RETRY):
            alias = (await self._match_case(service), now)
            if len(self._aliases) >= self.max_clusters:  # made-up names: start afresh
                self._aliases.clear()
            self._aliases[service] = alias
        return alias[0]

    async def _match_case(self, service: str) -> str:
        try:
            names = await self._registry.list_services()
        except Exception:  # a registry error must not fail the call: use the name as given
            log.debug("listing services failed while resolving %s", service, exc_info=True)
            return service
        matches = [n for n in names if n.lower() == service]
        return matches[0] if len(matches) == 1 else service

    async def _follow(self, cluster: Cluster) -> None:
        with anyio.CancelScope() as cluster.watch:
            await self._watch(cluster)

    async def _watch(self, cluster: Cluster) -> None:
        async with AsyncExitStack() as stack:
            if cluster.policy.health_check is not None:
                # The checker's module loads with the first cluster configured to probe.
                from sofamesh.upstream.health import HealthChecker

                cluster.health = await stack.enter_async_context(
                    HealthChecker(cluster.policy.health_check, connect=self.probe_connect)
                )
            snapshots = await stack.enter_async_context(self._registry.watch(cluster.service))
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._end_holds, cluster)
                async for snap in snapshots:
                    cluster.update(snap)
                    if cluster.provisional and self._unknown(cluster):
                        break
                tg.cancel_scope.cancel()

    def _unknown(self, cluster: Cluster) -> bool:
        """After a call's first snapshot: drop the cluster (True) if the registry lists nothing."""
        cluster.provisional = False
        if cluster.endpoints or self.clusters.get(cluster.service) is not cluster:
            return False
        del self.clusters[cluster.service]
        self.unknown += 1
        self._stats.incr("upstream.unknown_service")
        if self.unknown == 1 or self.unknown % 1000 == 0:
            log.warning(
                "%s: not in the registry; answered without keeping a cluster (%d so far)",
                cluster.service,
                self.unknown,
            )
        return True

    async def _end_holds(self, cluster: Cluster) -> None:
        """Release each held removal when its lease is over; idle while nothing is held."""
        while True:
            due = cluster.removals.next_release
            if due is None:
                cluster.hold_started = anyio.Event()
                await cluster.hold_started.wait()
                continue
            await self._sleep(max(0.0, due - self._clock.now()))
            cluster.release(self._clock.now())
