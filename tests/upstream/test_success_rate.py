"""Success-rate outlier detection (Envoy's success_rate ejection), driven by plain-float time."""

from __future__ import annotations

import math
import random

import pytest

from sofamesh.upstream.success_rate import SuccessRateConfig, SuccessRateDetector

T0 = 1000.0
HOSTS = [f"h{i}" for i in range(6)]


def detector(**kw: float) -> SuccessRateDetector:
    d = SuccessRateDetector(SuccessRateConfig(**kw), random.Random(2).random)  # type: ignore[arg-type]
    d.set_hosts(HOSTS)
    d.tick(T0)  # the first interval starts now
    return d


def traffic(d: SuccessRateDetector, rates: dict[str, float], now: float, calls: int = 200) -> None:
    for key, rate in rates.items():
        ok = round(calls * rate)
        for i in range(calls):
            d.record(key, i < ok, now)


GOOD = {k: 0.99 for k in HOSTS}


def test_an_endpoint_far_below_its_peers_is_ejected_at_the_interval_end() -> None:
    d = detector()
    traffic(d, {**GOOD, "h5": 0.5}, T0 + 1)
    assert not d.is_ejected("h5", T0 + 9.9)  # nothing is decided mid-interval
    assert d.tick(T0 + 10) == ["h5"]
    assert d.is_ejected("h5", T0 + 10) and not d.is_ejected("h0", T0 + 10)
    st = d.statistics()
    assert st.ejections_total == 1 and st.last_mean == pytest.approx((5 * 0.99 + 0.5) / 6)


def test_threshold_is_mean_minus_factor_times_population_stdev() -> None:
    d = detector(stdev_factor=1.0)
    rates = {"h0": 1.0, "h1": 1.0, "h2": 0.9, "h3": 0.9, "h4": 0.8, "h5": 0.8}
    traffic(d, rates, T0 + 1, calls=100)
    ejected = d.tick(T0 + 10)
    mean = 0.9
    stdev = math.sqrt(sum((r - mean) ** 2 for r in rates.values()) / 6)
    assert d.statistics().last_threshold == pytest.approx(mean - stdev)
    assert ejected == ["h4"]  # both are below; max_ejection_percent 10 lets one go (at least one)


def test_too_few_endpoints_with_enough_volume_means_no_verdict() -> None:
    d = detector()
    traffic(d, {"h0": 0.99, "h1": 0.99, "h2": 0.99, "h4": 0.1}, T0 + 1)
    traffic(d, {"h3": 0.99, "h5": 0.99}, T0 + 1, calls=99)  # below request_volume: not counted
    assert d.tick(T0 + 10) == []
    assert d.statistics().last_mean is None


def test_the_ejection_is_lifted_after_base_time_times_ejections() -> None:
    d = detector(base_ejection_time=30.0, max_ejection_percent=50.0)
    traffic(d, {**GOOD, "h5": 0.2}, T0 + 1)
    d.tick(T0 + 10)
    assert d.is_ejected("h5", T0 + 39)
    assert not d.is_ejected("h5", T0 + 40)  # lifted at the evaluation at or after 30 s
    traffic(d, {**GOOD, "h5": 0.2}, T0 + 41)
    assert d.tick(T0 + 50) == ["h5"]
    assert d.is_ejected("h5", T0 + 100)  # second ejection: 60 s
    assert not d.is_ejected("h5", T0 + 110)
    traffic(d, {**GOOD, "h5": 0.2}, T0 + 111)
    d.tick(T0 + 120)  # ejected again soon after: 3 x 30 s
    assert d.is_ejected("h5", T0 + 200) and not d.is_ejected("h5", T0 + 210)


def test_staying_in_shortens_the_next_ejection() -> None:
    d = detector(base_ejection_time=30.0)
    traffic(d, {**GOOD, "h5": 0.2}, T0 + 1)
    d.tick(T0 + 10)
    assert not d.is_ejected("h5", T0 + 40)
    d.tick(T0 + 70)  # in for 30 s: the back-off drops to zero
    traffic(d, {**GOOD, "h5": 0.2}, T0 + 71)
    d.tick(T0 + 80)
    assert d.is_ejected("h5", T0 + 100) and not d.is_ejected("h5", T0 + 110)  # 30 s again


def test_counts_restart_every_interval() -> None:
    d = detector()
    traffic(d, {**GOOD, "h5": 0.5}, T0 + 1, calls=60)
    d.tick(T0 + 10)
    traffic(d, {**GOOD, "h5": 0.5}, T0 + 11, calls=60)
    assert d.tick(T0 + 20) == []  # 60 + 60 over two intervals is not 100 in one


def test_enforcing_zero_ejects_nothing() -> None:
    d = detector(enforcing_success_rate=0.0)
    traffic(d, {**GOOD, "h5": 0.1}, T0 + 1)
    assert d.tick(T0 + 10) == []


def test_membership_changes() -> None:
    d = detector()
    traffic(d, {**GOOD, "h5": 0.1}, T0 + 1)
    d.set_hosts(HOSTS[:5])  # h5 left before the evaluation
    assert d.tick(T0 + 10) == [] and not d.is_ejected("h5", T0 + 10)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SuccessRateConfig(interval=0)
    with pytest.raises(ValueError):
        SuccessRateConfig(enforcing_success_rate=101)
