"""Passive outlier ejection, on a fake clock (plain floats)."""

from __future__ import annotations

from sofamesh.upstream.outlier import OutlierConfig, OutlierDetector


def detector(n: int = 3, **kw: float) -> OutlierDetector:
    d = OutlierDetector(OutlierConfig(consecutive_failures=n, base_ejection_time=10, **kw))  # type: ignore[arg-type]
    d.set_hosts(["a", "b", "c", "d"])
    return d


def test_ejects_after_n_consecutive_failures() -> None:
    d = detector()
    assert not d.record("a", True, 0) and not d.record("a", True, 1)
    assert d.record("a", True, 2)
    assert d.is_ejected("a", 3)


def test_success_resets_the_streak() -> None:
    d = detector()
    d.record("a", True, 0)
    d.record("a", True, 0)
    d.record("a", False, 0)
    assert not d.record("a", True, 0)
    assert not d.is_ejected("a", 0)


def test_ejection_time_grows_with_each_ejection() -> None:
    d = detector(n=1)
    d.record("a", True, 0)
    assert d.is_ejected("a", 9.9) and not d.is_ejected("a", 10.0)
    d.record("a", True, 10.0)  # second ejection: 2 x base
    assert d.is_ejected("a", 29.9) and not d.is_ejected("a", 30.0)


def test_ejection_multiplier_decays_while_healthy() -> None:
    d = detector(n=1)
    d.record("a", True, 0)
    assert not d.is_ejected("a", 10)
    d.record("a", False, 35)  # three healthy base periods later
    d.record("a", True, 35)
    assert not d.is_ejected("a", 45.0)  # back to 1 x base


def test_max_ejection_percent_caps_ejections_but_one_is_always_allowed() -> None:
    d = detector(n=1, max_ejection_percent=25)
    assert d.record("a", True, 0)  # 1 of 4 = 25 %
    assert not d.record("b", True, 0)  # would be 50 %
    assert d.statistics(0).ejections_overflow == 1
    tiny = OutlierDetector(OutlierConfig(consecutive_failures=1, max_ejection_percent=0))
    tiny.set_hosts(["x", "y"])
    assert tiny.record("x", True, 0)  # at least one, as in Envoy


def test_departed_hosts_are_forgotten() -> None:
    d = detector(n=1)
    d.record("a", True, 0)
    d.set_hosts(["b", "c"])
    assert not d.is_ejected("a", 1)
    assert d.host_stats("a") is None
