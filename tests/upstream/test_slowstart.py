"""Slow start for new endpoints (Envoy's slow_start_config)."""

from __future__ import annotations

import math

import pytest

from sofamesh.endpoint import Endpoint
from sofamesh.upstream.slowstart import SlowStart, SlowStartConfig

T0 = 1000.0
A = Endpoint(service="s", host="a", port=1, weight=200)
B = Endpoint(service="s", host="b", port=1, weight=200)


def test_linear_ramp_with_aggression_one() -> None:
    s = SlowStart(SlowStartConfig(window=60, min_weight_percent=0))
    s.observe([A], T0)
    assert s.weight(A, T0 + 30) == pytest.approx(100)
    assert s.weight(A, T0 + 60) == 200
    assert not s.in_slow_start(A, T0 + 60)


def test_time_factor_floors_elapsed_at_one_second() -> None:
    s = SlowStart(SlowStartConfig(window=100, min_weight_percent=0))
    s.observe([A], T0)
    assert s.factor(A, T0) == pytest.approx(0.01)


def test_min_weight_percent_floor() -> None:
    s = SlowStart(SlowStartConfig(window=100))
    s.observe([A], T0)
    assert s.factor(A, T0 + 2) == pytest.approx(0.10)


def test_aggression_ramps_faster_early() -> None:
    s = SlowStart(SlowStartConfig(window=100, aggression=2.0, min_weight_percent=0))
    s.observe([A], T0)
    assert s.factor(A, T0 + 25) == pytest.approx(math.sqrt(0.25))


def test_only_newcomers_ramp() -> None:
    s = SlowStart(SlowStartConfig(window=60))
    s.observe([A], T0)
    s.observe([A, B], T0 + 100)
    assert s.factor(A, T0 + 110) == 1.0
    assert s.factor(B, T0 + 110) < 1.0


def test_endpoint_that_returns_starts_slow_again() -> None:
    s = SlowStart(SlowStartConfig(window=60))
    s.observe([A], T0)
    s.observe([], T0 + 100)
    s.observe([A], T0 + 200)
    assert s.in_slow_start(A, T0 + 210)


def test_restart_after_health_recovery() -> None:
    s = SlowStart(SlowStartConfig(window=60))
    s.observe([A], T0)
    s.restart(A, T0 + 500)
    assert s.in_slow_start(A, T0 + 510)


def test_unknown_endpoint_has_full_weight() -> None:
    assert SlowStart(SlowStartConfig(window=10)).weight(B, T0) == 200


def test_weight_never_decreases_during_window() -> None:
    s = SlowStart(SlowStartConfig(window=30, aggression=1.5))
    s.observe([A], T0)
    weights = [s.weight(A, T0 + t / 2) for t in range(80)]
    assert weights == sorted(weights)


def test_config_validated() -> None:
    with pytest.raises(ValueError):
        SlowStartConfig(window=0)
    with pytest.raises(ValueError):
        SlowStartConfig(window=1, aggression=0)
