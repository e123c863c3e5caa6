"""The balancing step under governance: subsets, Dubbo tags, consistent hashing, zones, slow start.

`RouteFilter` puts a `Target` on the invocation (`inv.route`); `BalanceFilter`
then calls `target.pick(cluster, inv, now)` instead of `cluster.pick`. A
target is shared by every call that takes it and allocates nothing per call
on the common path. It picks in four steps:

1. **Subset** (Envoy's subset load balancer): the first of the target's subsets
   in preference order with a healthy endpoint (not ejected, weight > 0). If
   none has one, the first subset with members in panic mode (health ignored,
   as `Cluster.pick` does for the whole cluster); none at all -> no endpoint.
2. **Zones** (`zone.py`, Envoy zone-aware routing), if the service has a
   `load_balancing.zone_aware` rule: the plan narrows the healthy endpoints to
   the local zone or a spill-over zone.
3. **Hashing** (`upstream/hashing.py`), if the rule hashes a header and the call has it:
   the ring or Maglev balancer named by the rule's `hash.algorithm` (made by
   the balancer registry) decides over the candidates. A retry whose hashed
   endpoint was already tried rehashes (key#attempt) as Envoy does, then
   falls back to the balancer.
4. **Balancer**: the cluster's own (`policy.balancer`, made by the registry
   in `upstream/balancers.py`) over the candidates not yet tried (all of
   them when every one was tried). During slow start (`slowstart.py`) the
   choice is weighted random over the ramped weights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sofamesh.endpoint import Endpoint
from sofamesh.governance.filters.keyed import BoundedDict
from sofamesh.governance.routing_rules import Balancing, Subset, TagRouting
from sofamesh.model import Invocation
from sofamesh.upstream.balancers import Balancer, BalancerSpec, HashBalancer, make_hash_balancer
from sofamesh.upstream.outlier import OutlierDetector
from sofamesh.upstream.slowstart import SlowStart
from sofamesh.upstream.zone import ZoneAwareConfig, ZonePlan, plan_zones

if TYPE_CHECKING:
    from sofamesh.governance.filters.retry import RetryBudgetState
    from sofamesh.governance.filters.route import RouteLeaf
    from sofamesh.governance.routing_rules import RetryPolicy


class ClusterView(Protocol):
    """What a target reads of `cluster.Cluster`."""

    endpoints: tuple[Endpoint, ...]
    outlier: OutlierDetector
    balancer: Balancer

    @property
    def health(self) -> object: ...

    @property
    def success_rate(self) -> object: ...

    def available(self, ep: Endpoint, now: float) -> bool: ...


class SubsetFilter:
    """A cluster's members matching a predicate, recomputed only when membership changes."""

    __slots__ = ("_members", "_pred", "_rotation", "_source", "label")

    def __init__(self, pred: Callable[[Endpoint], bool], label: str) -> None:
        self._pred = pred
        self.label = label
        self._source: tuple[Endpoint, ...] | None = None
        self._members: tuple[Endpoint, ...] = ()
        self._rotation: tuple[tuple[Endpoint, ...], list[Endpoint]] = ((), [])

    @classmethod
    def of(cls, subset: Subset) -> SubsetFilter:
        return cls(subset.matches, subset.describe())

    def members(self, endpoints: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        if endpoints is not self._source:  # Cluster.update replaces the tuple
            self._refresh(endpoints)
        return self._members

    def rotation(
        self, endpoints: tuple[Endpoint, ...]
    ) -> tuple[tuple[Endpoint, ...], list[Endpoint]]:
        """The members, and those in rotation when nothing is ejected (weighted); do not mutate."""
        if endpoints is not self._source:
            self._refresh(endpoints)
        return self._rotation

    def _refresh(self, endpoints: tuple[Endpoint, ...]) -> None:
        self._members = members = tuple(e for e in endpoints if self._pred(e))
        self._rotation = (members, [e for e in members if e.weight > 0])
        self._source = endpoints


def tag_subsets(spec: TagRouting, tag: str, force: bool) -> tuple[SubsetFilter, ...]:
    """Dubbo's TagRouter: the subsets, in preference order, for a request tag ("" = none).

    An endpoint carries tag T if T is among its published tags (Dubbo's static
    ``dubbo.tag``) or its address is in the rule's group T (a dynamic tag).
    A tagged request goes to endpoints carrying its tag; when there are none,
    it falls back to *untagged* endpoints (no published tag, in no group)
    unless forced (`force`, or the request's force header). A request without
    a tag goes to endpoints in no group whose tags include no group name.
    """
    groups = {g.name: frozenset(g.addresses) for g in spec.groups}
    grouped = frozenset().union(*groups.values()) if groups else frozenset()
    names = frozenset(groups)
    if not tag:
        return (
            SubsetFilter(lambda e: e.address not in grouped and not (e.tags & names), "untagged"),
        )
    members = groups.get(tag, frozenset())
    tagged = SubsetFilter(lambda e: tag in e.tags or e.address in members, f"tag={tag}")
    if force:
        return (tagged,)
    return tagged, SubsetFilter(lambda e: not e.tags and e.address not in grouped, "untagged")


class BalancingLeaf:
    """A service's `load_balancing` rule with its state: tables, zone plans, slow start."""

    def __init__(
        self, rule: Balancing, local_zone: str, rand: Callable[[], float] | None = None
    ) -> None:
        self.rule = rule
        self._rand = rand or random.random
        self._hash = rule.hash
        self._hasher: HashBalancer | None = None
        if rule.hash is not None:
            spec = BalancerSpec(rand=self._rand, hash_config=rule.hash.config())
            self._hasher = make_hash_balancer(rule.hash.algorithm, spec)
        zone = rule.zone_aware
        zone_name = (zone.local_zone or local_zone) if zone else ""
        self._zone = (
            ZoneAwareConfig(
                local_zone=zone_name,
                min_cluster_size=zone.min_cluster_size,
                routing_enabled=zone.routing_enabled,
                panic_threshold=zone.panic_threshold,
            )
            if zone and zone_name
            else None
        )
        self._slow = SlowStart(rule.slow_start) if rule.slow_start else None
        self._observed: tuple[Endpoint, ...] | None = None
        self._plans: BoundedDict[tuple[tuple[str, ...], tuple[str, ...]], ZonePlan] = BoundedDict(8)
        self.hashed = 0

    def choose(
        self,
        cluster: ClusterView,
        members: Sequence[Endpoint],
        healthy: Sequence[Endpoint],
        inv: Invocation,
        now: float,
    ) -> Endpoint:
        pool: Sequence[Endpoint] = healthy
        if self._zone is not None:
            pool = self._plan(members, healthy).choose(self._rand) or healthy
        tried = inv.tried
        if self._hash is not None and self._hasher is not None:
            key = inv.headers.get(self._hash.header)
            if key is not None:
                ep = self._hashed(self._hasher, pool, key, tried, inv.attempt)
                if ep is not None:
                    self.hashed += 1
                    return ep
        candidates = [e for e in pool if e.key not in tried] or list(pool)
        if self._slow is not None:
            return self._slow_pick(cluster.endpoints, candidates, cluster.balancer, inv, now)
        return cluster.balancer.pick(candidates, inv)

    def _plan(self, members: Sequence[Endpoint], healthy: Sequence[Endpoint]) -> ZonePlan:
        assert self._zone is not None
        key = (tuple(e.key for e in members), tuple(e.key for e in healthy))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans.put(key, plan_zones(self._zone, members, set(healthy)))
        return plan

    @staticmethod
    def _hashed(
        hasher: HashBalancer,
        pool: Sequence[Endpoint],
        key: str,
        tried: set[str],
        attempt: int,
    ) -> Endpoint | None:
        table = hasher.table(pool)
        ep = table.pick(key)
        for n in range(1, 4):  # Envoy rehashes a retry that lands on a host already tried
            if ep is None or ep.key not in tried:
                break
            ep = table.pick(f"{key}#{attempt}.{n}")
        return ep if ep is not None and ep.key not in tried else None

    def _slow_pick(
        self,
        endpoints: tuple[Endpoint, ...],
        candidates: list[Endpoint],
        balancer: Balancer,
        inv: Invocation,
        now: float,
    ) -> Endpoint:
        slow = self._slow
        assert slow is not None
        if endpoints is not self._observed:
            slow.observe(endpoints, now)
            self._observed = endpoints
        if not any(slow.in_slow_start(e, now) for e in candidates):
            return balancer.pick(candidates, inv)
        weights = [slow.weight(e, now) for e in candidates]
        point = self._rand() * sum(weights)
        for e, w in zip(candidates, weights, strict=True):
            point -= w
            if point < 0:
                return e
        return candidates[-1]

    def describe(self) -> dict[str, Any]:
        return {
            "service": self.rule.service,
            "hashed": self.hashed,
            "table_builds": self._hasher.table_builds if self._hasher is not None else 0,
            "zone": self._zone.local_zone if self._zone else None,
            "slow_start": self._slow is not None,
        }


class Target:
    """One way to choose endpoints: what a matched route (or a service's default) decided."""

    __slots__ = ("_balancing", "_one", "_subsets", "budget", "leaf", "mirror", "name", "retry")

    def __init__(
        self,
        name: str,
        subsets: tuple[SubsetFilter | None, ...],
        balancing: BalancingLeaf | None = None,
        retry: RetryPolicy | None = None,
        budget: RetryBudgetState | None = None,
        leaf: RouteLeaf | None = None,
    ) -> None:
        self.name = name
        self._subsets = subsets or (None,)
        # A target of one subset (a split entry's, the common route): `pick` reads it
        # without walking the preference list.
        self._one = subsets[0] if len(subsets) == 1 else None
        self._balancing = balancing
        self.retry = retry
        self.budget = budget
        self.leaf = leaf
        self.mirror: tuple[Target, float] | None = None  # where to copy calls, and what share

    def describe(self) -> str:
        return " or ".join(s.label if s is not None else "all" for s in self._subsets)

    def pick(self, cluster: Any, inv: Invocation, now: float) -> Endpoint | None:
        view: ClusterView = cluster
        members: Sequence[Endpoint]
        healthy: Sequence[Endpoint]
        subset = self._one
        if (
            subset is not None
            and subset._source is view.endpoints
            and view.health is None
            and view.success_rate is None
            and now >= view.outlier.ejections_end
        ):
            # `_candidates`' common case, inline (two Python calls less on every call):
            # one subset, nothing ejected, its rotation kept since the last snapshot.
            members, healthy = subset._rotation
        else:
            members, healthy = self._candidates(view, now)
        if not healthy:
            return None
        if self._balancing is not None:
            return self._balancing.choose(view, members, healthy, inv, now)
        tried = inv.tried
        candidates = ([e for e in healthy if e.key not in tried] or healthy) if tried else healthy
        return view.balancer.pick(candidates, inv)

    def _candidates(
        self, view: ClusterView, now: float
    ) -> tuple[Sequence[Endpoint], Sequence[Endpoint]]:
        first: Sequence[Endpoint] | None = None
        endpoints = view.endpoints
        # Nothing ejected and no probes or success-rate ejection running: every weighted
        # member is in rotation, without a health question per endpoint (Cluster.pick's test).
        all_in = (
            view.health is None and view.success_rate is None and now >= view.outlier.ejections_end
        )
        healthy: Sequence[Endpoint]
        for subset in self._subsets:
            if all_in and subset is not None:  # kept with the subset until the next snapshot
                members, healthy = subset.rotation(endpoints)
            elif all_in:
                members = endpoints
                healthy = [e for e in members if e.weight > 0]
            else:
                members = endpoints if subset is None else subset.members(endpoints)
                healthy = [e for e in members if view.available(e, now)]
            if healthy:
                return members, healthy
            if first is None and members:
                first = members
        if first is None:
            return (), []
        return first, [e for e in first if e.weight > 0]  # panic: health ignored
