"""Concrete level: a service resolved to endpoints, their health, and a balancer.

A `Cluster` follows one service's endpoint set from the registry and answers
"which endpoint now?" A `ClusterManager` owns one watch task per service the
mesh has called, inside its task group, and creates clusters on first use.

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
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import attrs

from sofamesh.clock import Clock
from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation, Status
from sofamesh.registry.base import DEFAULT_LEASE, Registry, Snapshot
from sofamesh.stats import CallStats, Stats
from sofamesh.upstream.balancers import Balancer, BalancerSpec, make_balancer
from sofamesh.upstream.outlier import OutlierConfig, OutlierDetector
from sofamesh.upstream.settings import HealthCheckConfig, RemovalConfig, SuccessRateConfig

if TYPE_CHECKING:
    from sofamesh.upstream.health import HealthChecker, ProbeConnect
    from sofamesh.upstream.removals import Change
    from sofamesh.upstream.success_rate import SuccessRateDetector

log = logging.getLogger("sofamesh.upstream.cluster")

ALIAS_RETRY = 1.0  # seconds between case-insensitive look-ups of a name that matched nothing
MAX_CLUSTERS = 1000
CLUSTER_IDLE_TIMEOUT = 600.0  # seconds


class ClusterPolicy(Protocol):
    """What a cluster reads of a service's policy (`config.model.PolicyConfig` has it)."""

    @property
    def balancer(self) -> str: ...
    @property
    def outlier(self) -> OutlierConfig: ...
    @property
    def success_rate(self) -> SuccessRateConfig | None: ...
    @property
    def health_check(self) -> HealthCheckConfig | None: ...
    @property
    def registry(self) -> RemovalConfig: ...


def _success_rate(config: SuccessRateConfig | None) -> SuccessRateDetector | None:
    """The detector, whose module loads with the first cluster that configures one."""
    if config is None:
        return None
    from sofamesh.upstream.success_rate import SuccessRateDetector

    return SuccessRateDetector(config)


class Cluster:
    """The endpoints of one service and what the mesh knows about each."""

    def __init__(
        self,
        service: str,
        policy: ClusterPolicy,
        stats: Stats,
        clock: Clock,
        protocols: Set[str] | None = None,
    ) -> None:
        self.service = service
        self.protocols = protocols
        self.policy = policy
        self.endpoints: tuple[Endpoint, ...] = ()
        self._weighted: list[Endpoint] = []  # endpoints with weight > 0
        self.active: dict[str, int] = {}
        # The removal guard loads with the first cluster (a first call), not with the
        # process: an idle sidecar never runs it.
        from sofamesh.upstream.removals import RemovalGuard

        self.outlier = OutlierDetector(policy.outlier)
        self.success_rate = _success_rate(policy.success_rate)
        self.balancer: Balancer = make_balancer(
            policy.balancer, BalancerSpec(active=self._active_of)
        )
        self.ready = anyio.Event()
        self.is_ready = False  # `ready.is_set()` as a plain attribute, for the call path
        self.removals = RemovalGuard(policy.registry)
        self.hold_started = anyio.Event()  # set when a removal is held (the manager's timer)
        self.health: HealthChecker | None = None  # set while active health checks run
        self.used = True  # called since the manager's last idle sweep
        self.provisional = False  # created for a call: dropped if its first snapshot is empty
        self.watch: anyio.CancelScope | None = None  # the manager's task following the registry
        self._stats = stats
        self._clock = clock
        # Each endpoint's stats row, by key: found without formatting its address per call.
        self._rows: dict[str, CallStats] = {}

    def _active_of(self, ep: Endpoint) -> int:
        return self.active.get(ep.key, 0)

    def update(self, snapshot: frozenset[Endpoint]) -> None:
        """Follow a registry snapshot (a `Snapshot`, or a bare set: no marks, default lease)."""
        withdrawn: frozenset[str] = frozenset()
        lease = DEFAULT_LEASE
        if isinstance(snapshot, Snapshot):
            withdrawn, lease = snapshot.withdrawn, snapshot.lease
        # A registry may list instances this mesh cannot call (Dubbo providers in
        # ZooKeeper speak `dubbo`): only the protocols the mesh carries are kept.
        if self.protocols is not None:
            snapshot = frozenset(e for e in snapshot if e.protocol in self.protocols)
        from sofamesh.upstream.removals import NO_CHANGE  # loaded by __init__ already

        change = self.removals.offer(snapshot, withdrawn, lease, self._clock.now())
        if change is not NO_CHANGE:
            self._report(change, lease)
        self._set_endpoints(self.removals.in_force())
        self.mark_ready()

    def mark_ready(self) -> None:
        """The first snapshot is in: calls waiting for it go ahead."""
        self.is_ready = True
        self.ready.set()

    def release(self, now: float) -> None:
        """End the holds due by `now` (the manager's timer calls it)."""
        due = self.removals.release(now)
        if due:
            log.warning(
                "%s: held removal took effect after %.1fs: %s",
                self.service,
                now - due[0].since,
                ",".join(h.endpoint.address for h in due),
            )
            self._set_endpoints(self.removals.in_force())

    def _report(self, change: Change, lease: float) -> None:
        if change.held:
            self._stats.incr("registry.removals_held")
            self.hold_started.set()
            log.warning(
                "%s: the registry dropped %d endpoint(s) at once without their owners "
                "unpublishing them (%s); keeping them for one lease (%.1fs)",
                self.service,
                len(change.held),
                ",".join(e.address for e in change.held),
                lease,
            )
        if change.restored:
            log.info(
                "%s: listed again during their hold: %s",
                self.service,
                ",".join(e.address for e in change.restored),
            )

    def _set_endpoints(self, endpoints: list[Endpoint]) -> None:
        before = set(self.endpoints)
        self.endpoints = tuple(sorted(endpoints, key=lambda e: e.key))
        self._weighted = [e for e in self.endpoints if e.weight > 0]
        self.outlier.set_hosts(e.key for e in self.endpoints)
        if self.success_rate is not None:
            self.success_rate.set_hosts(e.key for e in self.endpoints)
        if self.health is not None:
            self.health.set_endpoints(self.endpoints)
        after = set(self.endpoints)
        added, removed = after - before, before - after
        for ep in removed:
            self._rows.pop(ep.key, None)
        if added or removed:
            log.info(
                "%s: %d endpoint(s) (+%s -%s)",
                self.service,
                len(self.endpoints),
                ",".join(e.address for e in added) or "0",
                ",".join(e.address for e in removed) or "0",
            )

    def available(self, ep: Endpoint, now: float) -> bool:
        """In rotation: weighted, not ejected by outlier detection, not failing health checks."""
        health, rate = self.health, self.success_rate
        return (
            ep.weight > 0
            and not self.outlier.is_ejected(ep.key, now)
            and (health is None or health.is_healthy(ep))
            and (rate is None or not rate.is_ejected(ep.key, now))
        )

    def pick(self, exclude: Set[str], now: float, inv: Invocation | None = None) -> Endpoint | None:
        """A healthy endpoint whose key is not in `exclude`; if every one is, any healthy one.

        `inv` is the call, for a balancer that hashes one of its headers.
        """
        if self.health is None and self.success_rate is None and now >= self.outlier.ejections_end:
            healthy = self._weighted  # nothing ejected, no probes: all are in rotation
        else:
            healthy = [e for e in self._weighted if self.available(e, now)]
            if not healthy:
                # Envoy's panic threshold: when everything is out, route to all rather than none.
                healthy = self._weighted
        candidates = (
            ([e for e in healthy if e.key not in exclude] or healthy) if exclude else healthy
        )
        return self.balancer.pick(candidates, inv) if candidates else None

    def record(
        self, ep: Endpoint, failed: bool, status: Status, ms: float, now: float | None = None
    ) -> None:
        """One call's outcome on `ep`, `ms` long, at `now` (the clock's unless the caller's)."""
        if now is None:
            now = self._clock.now()
        if self.success_rate is not None:
            self.success_rate.record(ep.key, not failed, now)
        host = self.outlier.hosts.get(ep.key)
        if not failed and host is not None and not host.times_ejected:
            host.streak = 0  # `OutlierDetector.record`'s common answer, without its call
        elif self.outlier.record(ep.key, failed, now):
            self._stats.incr("outlier.ejections")
            log.warning("%s: ejected %s after consecutive failures", self.service, ep.address)
        row = self._rows.get(ep.key)
        if row is None:
            row = self._rows[ep.key] = self._stats.endpoint(self.service, ep.address)
        row.record(status, ms, 0)  # every argument given: a call filling a default costs more

    def describe(self) -> dict[str, Any]:
        now = self._clock.now()
        return {
            "service": self.service,
            "balancer": self.policy.balancer,
            "endpoints": [self._describe_endpoint(e, now) for e in self.endpoints],
            "removals": attrs.asdict(self.removals.statistics()),
        }

    def _describe_endpoint(self, ep: Endpoint, now: float) -> dict[str, Any]:
        host = self.outlier.host_stats(ep.key)
        rate = self.success_rate
        ejected = self.outlier.is_ejected(ep.key, now) or (
            rate is not None and rate.is_ejected(ep.key, now)
        )
        down = self.health is not None and not self.health.is_healthy(ep)
        held = self.removals.held.get(ep.key)
        return {
            **ep.to_dict(),
            "address": ep.address,
            # "held": the registry no longer lists it; routed to until the hold ends.
            "registry": "held" if held else "listed",
            "held_for_s": round(max(0.0, held.until - now), 3) if held else 0,
            "health": "ejected" if ejected else ("unhealthy" if down else "healthy"),
            "active_requests": self.active.get(ep.key, 0),
            "consecutive_failures": host.consecutive_failures if host else 0,
            "times_ejected": host.times_ejected if host else 0,
            "ejected_for_s": round(host.ejected_until - now, 3)
            if host and ejected and host.ejected_until
            else 0,
        }


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
