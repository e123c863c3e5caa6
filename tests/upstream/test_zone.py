"""Zone-aware routing with spill-over (Envoy's zone_aware_lb_config)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sofamesh.endpoint import Endpoint
from sofamesh.upstream.zone import ZoneAwareConfig, ZoneMode, plan_zones

CFG = ZoneAwareConfig(local_zone="a")


def zone_eps(**counts: int) -> list[Endpoint]:
    return [
        Endpoint(service="s", host=f"{zone}{i}", port=1, zone=zone)
        for zone, n in counts.items()
        for i in range(n)
    ]


def test_local_zone_with_enough_capacity_keeps_every_call() -> None:
    eps = zone_eps(a=3, b=3)
    plan = plan_zones(CFG, eps, set(eps))
    assert plan.mode is ZoneMode.LOCAL_DIRECT
    assert all(e.zone == "a" for e in plan.choose(lambda: 0.99))


def test_short_local_zone_spills_over_in_proportion() -> None:
    eps = zone_eps(a=4, b=4, c=4)
    healthy = set(eps) - set(eps[:2])  # zone a down to 2 of 4
    plan = plan_zones(CFG, eps, healthy)
    assert plan.mode is ZoneMode.RESIDUAL
    # upstream share of a = 2/10, caller share = 4/12: 0.6 of calls stay local
    assert plan.local_share == pytest.approx(0.6)
    rng = random.Random(5)
    zones = Counter(plan.choose(rng.random)[0].zone for _ in range(6000))
    assert zones["a"] / 6000 == pytest.approx(0.6, abs=0.03)
    assert zones["b"] == pytest.approx(zones["c"], rel=0.15)  # equal surplus, equal spill


def test_caller_distribution_drives_the_decision() -> None:
    eps = zone_eps(a=3, b=3)
    plan = plan_zones(CFG, eps, set(eps), caller_zones={"a": 3, "b": 1})
    assert plan.mode is ZoneMode.RESIDUAL
    assert plan.local_share == pytest.approx(0.5 / 0.75)
    assert (
        plan_zones(CFG, eps, set(eps), caller_zones={"a": 1, "b": 3}).mode is ZoneMode.LOCAL_DIRECT
    )


def test_no_healthy_local_endpoint_uses_all_healthy() -> None:
    eps = zone_eps(a=2, b=6)
    healthy = {e for e in eps if e.zone == "b"}
    plan = plan_zones(CFG, eps, healthy)
    assert plan.mode is ZoneMode.ALL_HEALTHY
    assert set(plan.choose()) == healthy


def test_small_cluster_skips_zone_routing() -> None:
    eps = zone_eps(a=2, b=3)  # 5 < min_cluster_size 6
    assert plan_zones(CFG, eps, set(eps)).mode is ZoneMode.ALL_HEALTHY


def test_panic_mode_below_healthy_threshold() -> None:
    eps = zone_eps(a=4, b=4)
    plan = plan_zones(CFG, eps, set(eps[:3]))
    assert plan.mode is ZoneMode.PANIC
    assert len(plan.choose()) == 8


def test_routing_enabled_percentage() -> None:
    eps = zone_eps(a=3, b=3)
    cfg = ZoneAwareConfig(local_zone="a", routing_enabled=0)
    assert len(plan_zones(cfg, eps, set(eps)).choose(lambda: 0.5)) == 6


def test_config_validated() -> None:
    with pytest.raises(ValueError):
        ZoneAwareConfig(local_zone="a", panic_threshold=120)
