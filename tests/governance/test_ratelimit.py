"""Sentinel flow controllers on plain-float time: reject, warm-up, pacing, concurrency."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.governance.ratelimit import (
    Behavior,
    ConcurrencyLimiter,
    FlowConfig,
    FlowLimiter,
    Grade,
    PacingLimiter,
    QpsLimiter,
    build_limiter,
)
from sofamesh.governance.shadow import EnforcementConfig, Verdict

T0 = 1000.0


def admitted_per_second(limiter: FlowLimiter, demand: int, seconds: int) -> list[int]:
    """Offer `demand` evenly spaced calls a second; count admissions per second."""
    per = [0] * seconds
    for i in range(demand * seconds):
        if limiter.try_acquire(T0 + i / demand).admitted:
            per[i // demand] += 1
    return per


def test_qps_rejects_beyond_count_in_window() -> None:
    q = QpsLimiter(FlowConfig(count=3))
    assert [q.try_acquire(T0 + i * 0.01).verdict for i in range(4)] == [Verdict.ADMIT] * 3 + [
        Verdict.REJECT
    ]


def test_qps_window_slides_in_half_second_buckets() -> None:
    q = QpsLimiter(FlowConfig(count=2))
    assert q.try_acquire(T0 + 0.1).admitted  # bucket [T0, T0+0.5)
    assert q.try_acquire(T0 + 0.6).admitted  # bucket [T0+0.5, T0+1)
    assert not q.try_acquire(T0 + 0.9).admitted
    assert q.try_acquire(T0 + 1.0).admitted  # the first bucket slid out
    assert not q.try_acquire(T0 + 1.2).admitted


def test_qps_sustained_rate_equals_count() -> None:
    q = QpsLimiter(FlowConfig(count=50))
    assert admitted_per_second(q, demand=200, seconds=5) == [50] * 5


def test_qps_zero_count_rejects_everything() -> None:
    q = QpsLimiter(FlowConfig(count=0))
    assert not q.try_acquire(T0).admitted


def test_qps_cancel_uncounts_admission() -> None:
    q = QpsLimiter(FlowConfig(count=1))
    pace = q.try_acquire(T0)
    q.cancel(pace, T0)
    assert q.try_acquire(T0).admitted


def test_qps_shadow_counts_but_admits() -> None:
    q = QpsLimiter(FlowConfig(count=1, enforcement=EnforcementConfig(shadow=True)))
    verdicts = [q.try_acquire(T0).verdict for _ in range(3)]
    assert verdicts == [Verdict.ADMIT, Verdict.SHADOW, Verdict.SHADOW]
    s = q.statistics(T0)
    assert (s.passed, s.window_passed, s.enforcement.shadowed) == (1, 1, 2)


def test_warm_up_starts_at_count_over_cold_factor() -> None:
    q = QpsLimiter(FlowConfig(count=90, behavior=Behavior.WARM_UP, warm_up_period=10))
    first = admitted_per_second(q, demand=300, seconds=1)[0]
    assert first == 30  # 90 / cold factor 3


def test_warm_up_reaches_full_rate_after_period() -> None:
    q = QpsLimiter(FlowConfig(count=100, behavior=Behavior.WARM_UP, warm_up_period=10))
    per = admitted_per_second(q, demand=300, seconds=16)
    assert per[0] <= 34
    assert all(a <= b for a, b in itertools.pairwise(per))  # never ramps down
    assert per[5] < 100  # still warming half-way through
    assert per[12:] == [100] * 4  # full rate once the period (and Sentinel's 1 s lag) is over


def test_warm_up_store_refills_when_idle() -> None:
    q = QpsLimiter(FlowConfig(count=100, behavior=Behavior.WARM_UP, warm_up_period=10))
    admitted_per_second(q, demand=300, seconds=15)  # warm
    t = T0 + 100.0  # a long idle spell cools the store down again
    cold = sum(q.try_acquire(t + i / 300).admitted for i in range(300))
    assert cold <= 34


def test_warm_up_slope_matches_sentinel_math() -> None:
    q = QpsLimiter(FlowConfig(count=10, behavior=Behavior.WARM_UP, warm_up_period=10))
    q.try_acquire(T0)
    # warningToken = (10*10)//2 = 50; maxToken = 50 + int(2*10*10/4) = 100
    assert q.statistics(T0).stored_tokens == 100.0


def test_pacing_spaces_calls_evenly() -> None:
    p = PacingLimiter(FlowConfig(count=10, behavior=Behavior.PACING, max_queueing_time=1.0))
    delays = [p.try_acquire(T0).delay for _ in range(4)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_pacing_rejects_beyond_max_queueing_time() -> None:
    p = PacingLimiter(FlowConfig(count=10, behavior=Behavior.PACING, max_queueing_time=0.25))
    paces = [p.try_acquire(T0) for _ in range(5)]
    assert [x.admitted for x in paces] == [True, True, True, False, False]
    assert p.try_acquire(T0 + 0.3).delay == pytest.approx(0.0)  # its turn has come


def test_pacing_idle_time_earns_no_burst() -> None:
    p = PacingLimiter(FlowConfig(count=10, behavior=Behavior.PACING, max_queueing_time=0.0))
    p.try_acquire(T0)
    assert p.try_acquire(T0 + 60).admitted
    assert not p.try_acquire(T0 + 60.05).admitted


def test_pacing_shadow_neither_waits_nor_rejects() -> None:
    cfg = FlowConfig(
        count=10,
        behavior=Behavior.PACING,
        max_queueing_time=0.1,
        enforcement=EnforcementConfig(shadow=True),
    )
    p = PacingLimiter(cfg)
    paces = [p.try_acquire(T0) for _ in range(4)]
    assert all(x.admitted and x.delay == 0 for x in paces)
    assert p.statistics(T0).enforcement.shadowed == 3  # one delay + two rejections


def test_warm_up_pacing_ramps_spacing() -> None:
    cfg = FlowConfig(count=100, behavior=Behavior.WARM_UP_PACING, max_queueing_time=0.0)
    per = admitted_per_second(PacingLimiter(cfg), demand=300, seconds=15)
    assert per[0] <= 34 and per[-1] == 100


def test_concurrency_limits_in_flight_calls() -> None:
    c = ConcurrencyLimiter(FlowConfig(count=2, grade=Grade.CONCURRENCY))
    a, b = c.try_acquire(T0), c.try_acquire(T0)
    assert not c.try_acquire(T0).admitted
    c.release(a)
    assert c.try_acquire(T0).admitted
    c.release(b)
    assert c.statistics(T0).in_flight == 1


def test_concurrency_shadow_call_holds_a_slot() -> None:
    cfg = FlowConfig(count=1, grade=Grade.CONCURRENCY, enforcement=EnforcementConfig(shadow=True))
    c = ConcurrencyLimiter(cfg)
    c.try_acquire(T0)
    over = c.try_acquire(T0)
    assert over.verdict is Verdict.SHADOW and c.active == 2
    c.release(over)
    assert c.active == 1


def test_build_limiter_picks_controller() -> None:
    assert isinstance(build_limiter(FlowConfig(count=1)), QpsLimiter)
    assert isinstance(build_limiter(FlowConfig(count=1, behavior=Behavior.PACING)), PacingLimiter)
    concurrency = FlowConfig(count=1, grade=Grade.CONCURRENCY, behavior=Behavior.PACING)
    assert isinstance(build_limiter(concurrency), ConcurrencyLimiter)


@pytest.mark.parametrize(
    "kw",
    [
        {"count": -1},
        {"count": 1, "cold_factor": 1},
        {"count": 1, "warm_up_period": 0},
        {"count": 1, "max_queueing_time": -0.1},
        {"count": 1, "buckets": 0},
    ],
)
def test_config_rejects_invalid_values(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FlowConfig(**kw)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 50), st.lists(st.floats(0, 0.3), min_size=1, max_size=300))
def test_qps_never_admits_more_than_count_per_window(count: int, gaps: list[float]) -> None:
    q = QpsLimiter(FlowConfig(count=count))
    now = T0
    admitted: list[float] = []
    for gap in gaps:
        now += gap
        if q.try_acquire(now).admitted:
            admitted.append(now)
        # within the current window (this bucket and the previous one) at most `count`
        window_start = (now // 0.5) * 0.5 - 0.5
        assert sum(1 for t in admitted if t >= window_start) <= count


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.floats(0, 1), st.lists(st.floats(0, 0.2), min_size=1, max_size=200))
def test_pacing_admits_at_most_rate_times_span_plus_queue(
    count: int, max_wait: float, gaps: list[float]
) -> None:
    cfg = FlowConfig(count=count, behavior=Behavior.PACING, max_queueing_time=max_wait)
    p = PacingLimiter(cfg)
    now = T0
    starts: list[float] = []  # when each admitted call actually runs (arrival + delay)
    for gap in gaps:
        now += gap
        pace = p.try_acquire(now)
        if pace.admitted:
            assert pace.delay <= max_wait + 1e-9
            starts.append(now + pace.delay)
    starts.sort()
    for a, b in itertools.pairwise(starts):
        assert b - a >= 1 / count - 1e-9  # runs are spaced at least 1/count apart


def test_qps_over_longer_interval_compares_average_rate() -> None:
    # Sentinel: passQps = passed / interval; reject when passQps + 1 > count.
    q = QpsLimiter(FlowConfig(count=2, stat_interval=2.0, buckets=4))
    # passed 0, 1, 2 -> qps 0, 0.5, 1.0 (+1 <= 2: admit); passed 3 -> 1.5 + 1 > 2
    assert sum(q.try_acquire(T0 + i * 0.01).admitted for i in range(10)) == 3


@pytest.mark.parametrize(
    ("count", "interval", "admitted"),
    # Sentinel's passed / interval + 1 > count, for fractional limits: (count - 1) * interval
    # is 5.4 (6 pass), 1.5 (2 pass), 0.25 (1 passes), -0.5 (none), -1 (none), inf (all).
    [(3.7, 2.0, 6), (2.5, 1.0, 2), (1.5, 0.5, 1), (0.5, 1.0, 0), (0, 1.0, 0), (1e400, 1.0, 20)],
)
def test_qps_fractional_limits_admit_as_sentinel_does(
    count: float, interval: float, admitted: int
) -> None:
    q = QpsLimiter(FlowConfig(count=count, stat_interval=interval))
    assert sum(q.try_acquire(T0 + i * 0.001).admitted for i in range(20)) == admitted
