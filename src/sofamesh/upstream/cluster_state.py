"""A `Cluster`: one service's endpoints, what the mesh knows about each, and their picking.

It follows the registry's snapshots (through the removal guard, which holds a
removal that takes too much at once), keeps each endpoint's outlier,
success-rate and health state, and answers "which endpoint now?" for a call.
The `ClusterManager` (cluster.py, which re-exports `Cluster`) creates clusters
and feeds them their snapshots.
"""

from __future__ import annotations

import logging
from collections.abc import Set
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs

from sofamesh.clock import Clock
from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation, Status
from sofamesh.registry.base import DEFAULT_LEASE, Snapshot
from sofamesh.stats import CallStats, Stats
from sofamesh.upstream.balancers import Balancer, BalancerSpec, make_balancer
from sofamesh.upstream.outlier import OutlierConfig, OutlierDetector
from sofamesh.upstream.settings import HealthCheckConfig, RemovalConfig, SuccessRateConfig

if TYPE_CHECKING:
    from sofamesh.upstream.health import HealthChecker
    from sofamesh.upstream.removals import Change
    from sofamesh.upstream.success_rate import SuccessRateDetector

# Read on every call: `Status.OK` is `EnumType.__getattr__`'s slow path on Python 3.11.
_OK = Status.OK
# The manager's logger too: a cluster's changes and the manager's decisions read as one.
log = logging.getLogger("sofamesh.upstream.cluster")


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

    def settled(self, ep: Endpoint, ms: float, now: float) -> None:
        """An OK call on `ep`: `record(ep, False, Status.OK, ms, now)`, the common outcome,
        without the tests and arguments it needs for the rest."""
        key = ep.key
        if self.success_rate is not None:
            self.success_rate.record(key, True, now)
        host = self.outlier.hosts.get(key)
        if host is not None and not host.times_ejected:
            host.streak = 0
        else:  # never ejects on a success; decays a past ejection's count
            self.outlier.record(key, False, now)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = self._stats.endpoint(self.service, ep.address)
        row.record(_OK, ms, 0)

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
