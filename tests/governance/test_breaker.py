"""Circuit breaker semantics (Sentinel's DegradeRule), driven by plain-float time."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.governance.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Permit,
    Strategy,
)
from sofamesh.governance.shadow import EnforcementConfig, Verdict

T0 = 1000.0


def call(b: CircuitBreaker, now: float, failed: bool = False, elapsed: float = 0.01) -> Permit:
    permit = b.allow(now)
    if permit.admitted:
        b.record(permit, failed=failed, elapsed=elapsed, now=now)
    return permit


def error_ratio(**kw: object) -> CircuitBreaker:
    cfg = dict(strategy=Strategy.ERROR_RATIO, threshold=0.5, min_request_count=5)
    cfg.update(kw)
    return CircuitBreaker(BreakerConfig(**cfg))  # type: ignore[arg-type]


def open_breaker(b: CircuitBreaker, now: float = T0) -> None:
    for _ in range(10):
        call(b, now, failed=True)
    assert b.state is BreakerState.OPEN


def test_error_ratio_opens_above_threshold() -> None:
    b = error_ratio()
    for _ in range(2):
        call(b, T0)
    for _ in range(2):
        call(b, T0, failed=True)
    assert b.state is BreakerState.CLOSED  # 4 calls: below min_request_count
    call(b, T0, failed=True)  # 3/5 = 0.6 > 0.5
    assert b.state is BreakerState.OPEN
    assert not b.allow(T0).admitted


def test_error_ratio_at_threshold_stays_closed() -> None:
    b = error_ratio()
    for failed in (True, False, True, False, False, True):
        call(b, T0, failed=failed)
    assert b.state is BreakerState.CLOSED  # 3/6 = 0.5 is not above 0.5


def test_error_ratio_below_min_request_count_stays_closed() -> None:
    b = error_ratio(min_request_count=10)
    for _ in range(9):
        call(b, T0, failed=True)
    assert b.state is BreakerState.CLOSED
    call(b, T0, failed=True)
    assert b.state is BreakerState.OPEN


def test_success_that_reaches_min_request_count_can_open() -> None:
    # Sentinel evaluates after every completion, not only after errors.
    b = error_ratio()
    for _ in range(4):
        call(b, T0, failed=True)
    call(b, T0)
    assert b.state is BreakerState.OPEN


def test_error_count_opens_above_count() -> None:
    b = CircuitBreaker(
        BreakerConfig(strategy=Strategy.ERROR_COUNT, threshold=3, min_request_count=1)
    )
    for _ in range(3):
        call(b, T0, failed=True)
    assert b.state is BreakerState.CLOSED
    call(b, T0, failed=True)
    assert b.state is BreakerState.OPEN


def test_slow_ratio_counts_calls_above_max_response_time() -> None:
    b = CircuitBreaker(
        BreakerConfig(
            strategy=Strategy.SLOW_REQUEST_RATIO,
            threshold=0.5,
            max_response_time=0.2,
            min_request_count=4,
        )
    )
    call(b, T0, elapsed=0.2)  # equal is not slow
    call(b, T0, elapsed=0.21)
    call(b, T0, elapsed=0.1)
    call(b, T0, elapsed=0.5, failed=True)  # 2/4 = 0.5: not above
    assert b.state is BreakerState.CLOSED
    call(b, T0, elapsed=1.0)  # 3/5
    assert b.state is BreakerState.OPEN


def test_slow_ratio_threshold_one_opens_when_all_slow() -> None:
    b = CircuitBreaker(
        BreakerConfig(
            strategy=Strategy.SLOW_REQUEST_RATIO,
            threshold=1.0,
            max_response_time=0.1,
            min_request_count=3,
        )
    )
    for _ in range(3):
        call(b, T0, elapsed=0.5)
    assert b.state is BreakerState.OPEN


def test_errors_leave_the_sliding_window() -> None:
    b = error_ratio(stat_interval=1.0, buckets=10)
    for _ in range(2):
        call(b, T0, failed=True)
    # 1.05 s later both errors have slid out of the window.
    for i in range(4):
        call(b, T0 + 1.05 + i * 0.01, failed=i < 2)
    assert b.state is BreakerState.CLOSED
    assert b.statistics(T0 + 1.1).window_total == 4


def test_window_slides_per_bucket() -> None:
    b = error_ratio(stat_interval=1.0, buckets=4, min_request_count=100)
    call(b, T0 + 0.1, failed=True)
    call(b, T0 + 0.6, failed=True)
    assert b.statistics(T0 + 0.99).window_errors == 2
    assert b.statistics(T0 + 1.1).window_errors == 1  # the 0.1 bucket has left
    assert b.statistics(T0 + 1.6).window_errors == 0


def test_open_rejects_until_recovery_timeout() -> None:
    b = error_ratio(recovery_timeout=5.0)
    open_breaker(b)
    assert not b.allow(T0 + 4.999).admitted
    assert b.state is BreakerState.OPEN
    p = b.allow(T0 + 5.0)
    assert p.admitted and p.probe
    assert b.state is BreakerState.HALF_OPEN


def test_half_open_admits_one_probe_by_default() -> None:
    b = error_ratio()
    open_breaker(b)
    assert b.allow(T0 + 5).probe
    assert b.allow(T0 + 5).verdict is Verdict.REJECT


def test_half_open_admits_n_probes() -> None:
    b = error_ratio(half_open_probes=3)
    open_breaker(b)
    permits = [b.allow(T0 + 5) for _ in range(5)]
    assert [p.admitted for p in permits] == [True, True, True, False, False]
    for p in permits[:2]:
        b.record(p, failed=False, elapsed=0.01, now=T0 + 5.1)
    assert b.state is BreakerState.HALF_OPEN  # two of three probes back
    b.record(permits[2], failed=False, elapsed=0.01, now=T0 + 5.2)
    assert b.state is BreakerState.CLOSED


def test_all_probes_succeed_closes_with_empty_window() -> None:
    b = error_ratio()
    open_breaker(b)
    p = b.allow(T0 + 5)
    b.record(p, failed=False, elapsed=0.01, now=T0 + 5)
    assert b.state is BreakerState.CLOSED
    assert b.statistics(T0 + 5).window_total == 0
    call(b, T0 + 5, failed=True)  # one error after closing does not reopen
    assert b.state is BreakerState.CLOSED


def test_failed_probe_reopens() -> None:
    b = error_ratio(half_open_probes=2)
    open_breaker(b)
    p1, p2 = b.allow(T0 + 5), b.allow(T0 + 5)
    b.record(p1, failed=False, elapsed=0.01, now=T0 + 5.5)
    b.record(p2, failed=True, elapsed=0.01, now=T0 + 6)
    assert b.state is BreakerState.OPEN
    assert not b.allow(T0 + 10.9).admitted  # the recovery timeout restarts at 6
    assert b.allow(T0 + 11).probe


def test_slow_probe_reopens() -> None:
    b = CircuitBreaker(
        BreakerConfig(
            strategy=Strategy.SLOW_REQUEST_RATIO,
            threshold=0.5,
            max_response_time=0.1,
            min_request_count=1,
        )
    )
    call(b, T0, elapsed=1.0)
    assert b.state is BreakerState.OPEN
    p = b.allow(T0 + 5)
    b.record(p, failed=False, elapsed=0.11, now=T0 + 5)
    assert b.state is BreakerState.OPEN


def test_failed_probe_reopens_slow_strategy_too() -> None:
    b = CircuitBreaker(
        BreakerConfig(
            strategy=Strategy.SLOW_REQUEST_RATIO, max_response_time=0.1, min_request_count=1
        )
    )
    call(b, T0, elapsed=1.0)
    p = b.allow(T0 + 5)
    b.record(p, failed=True, elapsed=0.01, now=T0 + 5)
    assert b.state is BreakerState.OPEN


def test_stale_probe_from_earlier_half_open_is_ignored() -> None:
    b = error_ratio(half_open_probes=2)
    open_breaker(b)
    old_ok, old_bad = b.allow(T0 + 5), b.allow(T0 + 5)
    b.record(old_bad, failed=True, elapsed=0.01, now=T0 + 5)  # reopen
    new = b.allow(T0 + 10)
    assert new.probe != old_ok.probe
    b.record(old_ok, failed=False, elapsed=0.01, now=T0 + 10)
    b.record(new, failed=False, elapsed=0.01, now=T0 + 10)
    assert b.state is BreakerState.HALF_OPEN  # one of two probes of this period so far


def test_outcome_of_call_admitted_while_closed_does_not_decide_half_open() -> None:
    b = error_ratio()
    early = b.allow(T0)
    open_breaker(b)
    b.allow(T0 + 5)  # the probe goes out
    b.record(early, failed=False, elapsed=5.0, now=T0 + 5)
    assert b.state is BreakerState.HALF_OPEN


def test_cancelled_probe_frees_its_slot() -> None:
    b = error_ratio()
    open_breaker(b)
    p = b.allow(T0 + 5)
    assert not b.allow(T0 + 5).admitted
    b.cancel(p, T0 + 5)
    assert b.allow(T0 + 5).probe


def test_shadow_mode_admits_but_counts_and_moves_state() -> None:
    b = error_ratio(enforcement=EnforcementConfig(shadow=True))
    open_breaker(b)
    p = b.allow(T0 + 1)
    assert p.admitted and p.verdict is Verdict.SHADOW
    b.record(p, failed=False, elapsed=0.01, now=T0 + 1)  # ignored: it would not have run
    assert b.state is BreakerState.OPEN
    stats = b.statistics(T0 + 1)
    # five of open_breaker's ten calls came after it opened, plus this one
    assert stats.enforcement.shadowed == 6 and stats.enforcement.rejected == 0


def test_enforced_fraction_enforces_a_share() -> None:
    rng = random.Random(7)
    b = CircuitBreaker(
        BreakerConfig(enforcement=EnforcementConfig(enforced_fraction=0.25)), rand=rng.random
    )
    open_breaker(b)
    verdicts = [b.allow(T0 + 1).verdict for _ in range(4000)]
    share = verdicts.count(Verdict.REJECT) / len(verdicts)
    assert 0.22 < share < 0.28
    assert verdicts.count(Verdict.SHADOW) + verdicts.count(Verdict.REJECT) == 4000


def test_enabled_fraction_skips_evaluation() -> None:
    b = CircuitBreaker(
        BreakerConfig(enforcement=EnforcementConfig(enabled_fraction=0.0)), rand=lambda: 0.5
    )
    for _ in range(20):
        p = b.allow(T0)
        assert p.verdict is Verdict.SKIP
        b.record(p, failed=True, elapsed=0.0, now=T0)
    assert b.state is BreakerState.CLOSED
    assert b.statistics(T0).enforcement.skipped == 20


def test_statistics_expose_state_for_clusters() -> None:
    b = error_ratio(recovery_timeout=3.0)
    open_breaker(b)
    s = b.statistics(T0)
    assert (s.state, s.opened, s.next_retry_at) == (BreakerState.OPEN, 1, T0 + 3.0)
    b.allow(T0 + 3)
    assert b.statistics(T0 + 3).probes_in_flight == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"threshold": 1.5},
        {"threshold": -0.1},
        {"strategy": Strategy.ERROR_COUNT, "threshold": -1},
        {"strategy": Strategy.SLOW_REQUEST_RATIO},
        {"recovery_timeout": 0},
        {"min_request_count": 0},
        {"half_open_probes": 0},
        {"buckets": 0},
        {"stat_interval": float("inf")},
        {"max_response_time": -1.0},
    ],
)
def test_config_rejects_invalid_values(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**kw)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 3), st.booleans(), st.floats(0, 0.5)), min_size=1, max_size=200
    ),
    st.integers(1, 4),
)
def test_never_admits_while_open_before_timeout(
    steps: list[tuple[float, bool, float]], probes: int
) -> None:
    b = error_ratio(half_open_probes=probes, recovery_timeout=2.0, min_request_count=3)
    now = T0
    opened_at: float | None = None
    for dt, failed, elapsed in steps:
        now += dt
        state_before = b.state
        p = b.allow(now)
        if state_before is BreakerState.OPEN and opened_at is not None and now < opened_at + 2.0:
            assert not p.admitted
        if p.admitted:
            b.record(p, failed=failed, elapsed=elapsed, now=now)
        if b.state is BreakerState.OPEN and state_before is not BreakerState.OPEN:
            opened_at = now
        if b.state is BreakerState.HALF_OPEN:
            assert b.statistics(now).probes_in_flight <= probes
