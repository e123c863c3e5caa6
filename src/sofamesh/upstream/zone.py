"""Zone-aware routing: prefer endpoints in the caller's zone, spill over when it is short.

Semantics follow Envoy's zone-aware routing (``zone_aware_lb_config``). Envoy
compares two distributions over zones: where the *callers* are (the local
cluster) and where the healthy *upstream* endpoints are:

- If the local zone holds at least as large a share of healthy upstream
  endpoints as of callers, every call stays local (``LOCAL_DIRECT``).
- Otherwise only ``upstream% / caller%`` of calls stay local, and the rest
  spill over to the zones that have more upstream share than caller share, in
  proportion to that surplus (``RESIDUAL``) -- so no zone is overloaded.
- No zone routing at all (every healthy endpoint is a candidate) when the
  upstream cluster is smaller than `min_cluster_size` (Envoy default 6), when
  the local zone has no healthy endpoint, or for the calls outside the
  `routing_enabled` percentage.
- Below `panic_threshold` percent healthy endpoints (Envoy's
  ``healthy_panic_threshold``, 50), health is ignored and every endpoint is a
  candidate (panic mode), as in Envoy.

Shares count endpoints, as Envoy counts hosts. Envoy learns the callers'
distribution from its own (local) cluster; when `caller_zones` is not given
we assume the callers are spread like the upstream endpoints themselves
(healthy or not), which keeps calls local exactly while the local zone's
healthy share has not fallen below its usual share.

A `ZonePlan` is built per membership or health change; `choose(rand)` is
O(zones) and returns the endpoints the balancer should pick from.
"""

from __future__ import annotations

import bisect
import enum
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from sofamesh.endpoint import Endpoint


def _percent(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"{attr.name} must be within 0..100, got {value}")


@attrs.frozen(kw_only=True)
class ZoneAwareConfig:
    local_zone: str
    min_cluster_size: int = attrs.field(default=6, validator=attrs.validators.ge(0))
    routing_enabled: float = attrs.field(default=100.0, validator=_percent)
    panic_threshold: float = attrs.field(default=50.0, validator=_percent)


class ZoneMode(enum.Enum):
    LOCAL_DIRECT = "local_direct"  # every call stays in the local zone
    RESIDUAL = "residual"  # a share stays local, the rest spills over
    ALL_HEALTHY = "all_healthy"  # no zone routing
    PANIC = "panic"  # too few healthy endpoints: every endpoint, healthy or not


@attrs.frozen
class ZonePlan:
    mode: ZoneMode
    local: tuple[Endpoint, ...]
    fallback: tuple[Endpoint, ...]  # the candidates without zone routing
    local_share: float = 1.0  # RESIDUAL: the share of calls that stay local
    spill_zones: tuple[tuple[Endpoint, ...], ...] = ()
    spill_cumulative: tuple[float, ...] = ()  # running sum of surplus shares
    routing_enabled: float = 100.0

    def choose(self, rand: Callable[[], float] = random.random) -> Sequence[Endpoint]:
        """The endpoints one call should be balanced over."""
        if self.mode is ZoneMode.PANIC or self.mode is ZoneMode.ALL_HEALTHY:
            return self.fallback
        if self.routing_enabled < 100.0 and rand() * 100.0 >= self.routing_enabled:
            return self.fallback
        if self.mode is ZoneMode.LOCAL_DIRECT or rand() < self.local_share:
            return self.local
        if not self.spill_cumulative:
            return self.fallback
        point = rand() * self.spill_cumulative[-1]
        i = bisect.bisect_right(self.spill_cumulative, point)
        return self.spill_zones[min(i, len(self.spill_zones) - 1)]


def plan_zones(
    config: ZoneAwareConfig,
    endpoints: Sequence[Endpoint],
    healthy: Collection[Endpoint],
    caller_zones: Mapping[str, float] | None = None,
) -> ZonePlan:
    """Decide how calls from `config.local_zone` spread over the zones of `endpoints`.

    `caller_zones` maps zone to the number (or share) of callers there.
    """
    live = tuple(e for e in endpoints if e in healthy)
    if not endpoints or len(live) * 100.0 < config.panic_threshold * len(endpoints):
        return ZonePlan(ZoneMode.PANIC, (), tuple(endpoints))
    by_zone: dict[str, list[Endpoint]] = {}
    for e in live:
        by_zone.setdefault(e.zone, []).append(e)
    local = tuple(by_zone.get(config.local_zone, ()))
    if len(endpoints) < config.min_cluster_size or not local:
        return ZonePlan(ZoneMode.ALL_HEALTHY, local, live)
    upstream = {z: len(es) / len(live) for z, es in by_zone.items()}
    callers = _shares(caller_zones) if caller_zones else _shares(_count_zones(endpoints))
    local_caller = callers.get(config.local_zone, 0.0)
    enabled = config.routing_enabled
    if upstream[config.local_zone] >= local_caller:
        return ZonePlan(ZoneMode.LOCAL_DIRECT, local, live, routing_enabled=enabled)
    return _residual(local, live, upstream, callers, config)


def _residual(
    local: tuple[Endpoint, ...],
    live: tuple[Endpoint, ...],
    upstream: Mapping[str, float],
    callers: Mapping[str, float],
    config: ZoneAwareConfig,
) -> ZonePlan:
    """Envoy's ``LocalityResidual``: keep upstream/caller of the calls, spill the rest."""
    by_zone: dict[str, list[Endpoint]] = {}
    for e in live:
        by_zone.setdefault(e.zone, []).append(e)
    zones, cumulative, running = [], [], 0.0
    for zone in sorted(by_zone):
        surplus = upstream[zone] - callers.get(zone, 0.0)
        if zone != config.local_zone and surplus > 0:
            running += surplus
            zones.append(tuple(by_zone[zone]))
            cumulative.append(running)
    share = upstream[config.local_zone] / callers[config.local_zone]
    return ZonePlan(
        ZoneMode.RESIDUAL,
        local,
        live,
        share,
        tuple(zones),
        tuple(cumulative),
        config.routing_enabled,
    )


def _count_zones(endpoints: Sequence[Endpoint]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for e in endpoints:
        counts[e.zone] = counts.get(e.zone, 0.0) + 1.0
    return counts


def _shares(counts: Mapping[str, float]) -> dict[str, float]:
    total = sum(v for v in counts.values() if v > 0)
    if total <= 0:
        return {}
    return {z: v / total for z, v in counts.items() if v > 0}
