"""Hot-parameter limiting (Sentinel ParamFlowRule, QPS grade, default behaviour)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.governance.hotparam import HotParamConfig, HotParamLimiter
from sofamesh.governance.shadow import EnforcementConfig, Verdict

T0 = 1000.0


def test_each_value_has_its_own_limit() -> None:
    h = HotParamLimiter(HotParamConfig(count=2))
    assert [h.try_acquire("u1", T0).admitted for _ in range(3)] == [True, True, False]
    assert h.try_acquire("u2", T0).admitted


def test_burst_adds_to_capacity() -> None:
    h = HotParamLimiter(HotParamConfig(count=2, burst=3))
    assert sum(h.try_acquire("k", T0).admitted for _ in range(10)) == 5


def test_no_refill_within_duration() -> None:
    h = HotParamLimiter(HotParamConfig(count=2, duration=1.0))
    h.try_acquire("k", T0)
    h.try_acquire("k", T0)
    assert not h.try_acquire("k", T0 + 0.99).admitted


def test_refill_after_duration_is_proportional_and_capped() -> None:
    h = HotParamLimiter(HotParamConfig(count=4, duration=1.0))
    for _ in range(4):
        h.try_acquire("k", T0)
    # 1.5 s later: floor(1.5 * 4) = 6 tokens, capped at 4; one is spent now.
    assert sum(h.try_acquire("k", T0 + 1.5).admitted for _ in range(10)) == 4


def test_override_replaces_count_for_one_value() -> None:
    h = HotParamLimiter(HotParamConfig(count=1, overrides={"vip": 3, "banned": 0}))
    assert sum(h.try_acquire("vip", T0).admitted for _ in range(5)) == 3
    assert not h.try_acquire("banned", T0).admitted
    assert sum(h.try_acquire("plain", T0).admitted for _ in range(5)) == 1


def test_hot_param_lru_is_bounded() -> None:
    h = HotParamLimiter(HotParamConfig(count=1, max_keys=3))
    for key in "abcde":
        h.try_acquire(key, T0)
    assert h.statistics().tracked_values == 3
    assert h.try_acquire("a", T0).admitted  # evicted: a fresh, full bucket
    assert not h.try_acquire("e", T0).admitted  # still tracked: its bucket is empty


def test_shadow_mode_counts_without_rejecting() -> None:
    h = HotParamLimiter(HotParamConfig(count=1, enforcement=EnforcementConfig(shadow=True)))
    assert [h.try_acquire("k", T0) for _ in range(2)] == [Verdict.ADMIT, Verdict.SHADOW]
    assert h.statistics().enforcement.shadowed == 1


def test_negative_override_rejected() -> None:
    with pytest.raises(ValueError):
        HotParamConfig(count=1, overrides={"x": -1})


def test_config_is_hashable_and_compares_overrides() -> None:
    a = HotParamConfig(count=1, overrides={"x": 1})
    assert a == HotParamConfig(count=1, overrides={"x": 1})
    assert a != HotParamConfig(count=1, overrides={"x": 2})
    assert hash(a) == hash(HotParamConfig(count=1, overrides={"x": 1}))


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 20),
    st.integers(0, 5),
    st.floats(0.5, 3),
    st.lists(st.floats(0, 0.5), min_size=1, max_size=300),
)
def test_token_bucket_never_admits_more_than_rate_times_t_plus_burst(
    count: int, burst: int, duration: float, gaps: list[float]
) -> None:
    h = HotParamLimiter(HotParamConfig(count=count, burst=burst, duration=duration))
    now = T0
    admitted = 0
    for gap in gaps:
        now += gap
        admitted += h.try_acquire("k", now).admitted
        assert admitted <= count + burst + (now - T0) * count / duration
