"""Envoy-style per-cluster resource limits (circuit_breakers.thresholds)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.governance.limits import ResourceLimits, ResourceLimitsConfig, RetryBudget
from sofamesh.governance.shadow import EnforcementConfig, Verdict


def test_envoy_defaults() -> None:
    s = ResourceLimits(ResourceLimitsConfig()).statistics()
    assert (s.connections.limit, s.pending.limit, s.requests.limit, s.retries.limit) == (
        1024,
        1024,
        1024,
        3,
    )


def test_max_requests_overflow_is_counted() -> None:
    limits = ResourceLimits(ResourceLimitsConfig(max_requests=2))
    a, b = limits.requests.try_acquire(), limits.requests.try_acquire()
    assert (a, b) == (Verdict.ADMIT, Verdict.ADMIT)
    assert limits.requests.try_acquire() is Verdict.REJECT
    s = limits.statistics().requests
    assert (s.active, s.remaining, s.overflow, s.open) == (2, 0, 1, True)
    limits.requests.release(a)
    assert limits.requests.try_acquire() is Verdict.ADMIT


def test_max_retries_caps_active_retries() -> None:
    limits = ResourceLimits(ResourceLimitsConfig(max_retries=1))
    first = limits.retries.try_acquire()
    assert limits.retries.try_acquire() is Verdict.REJECT
    limits.retries.release(first)
    assert limits.retries.try_acquire() is Verdict.ADMIT
    assert limits.statistics().retries.overflow == 1


def test_gauges_are_independent() -> None:
    limits = ResourceLimits(ResourceLimitsConfig(max_connections=1, max_pending_requests=1))
    assert limits.connections.try_acquire() is Verdict.ADMIT
    assert limits.pending.try_acquire() is Verdict.ADMIT
    assert limits.connections.try_acquire() is Verdict.REJECT
    assert limits.statistics().pending.overflow == 0


def test_retry_budget_scales_with_active_requests() -> None:
    cfg = ResourceLimitsConfig(retry_budget=RetryBudget(budget_percent=25, min_retry_concurrency=2))
    limits = ResourceLimits(cfg)
    assert limits.retries.limit == 2  # the floor with nothing active
    for _ in range(16):
        limits.requests.try_acquire()
    for _ in range(4):
        limits.pending.try_acquire()
    assert limits.retries.limit == 5  # 25% of 20
    taken = [limits.retries.try_acquire() for _ in range(6)]
    assert taken.count(Verdict.ADMIT) == 5 and taken[-1] is Verdict.REJECT


def test_retry_budget_ignores_max_retries() -> None:
    cfg = ResourceLimitsConfig(max_retries=100, retry_budget=RetryBudget())
    assert ResourceLimits(cfg).retries.limit == 3


def test_shadow_overflow_passes_and_occupies() -> None:
    cfg = ResourceLimitsConfig(max_requests=1, enforcement=EnforcementConfig(shadow=True))
    limits = ResourceLimits(cfg)
    first = limits.requests.try_acquire()
    over = limits.requests.try_acquire()
    assert over is Verdict.SHADOW and over.admitted
    s = limits.statistics()
    assert (s.requests.active, s.requests.overflow, s.enforcement.shadowed) == (2, 1, 1)
    limits.requests.release(over)
    limits.requests.release(first)
    assert limits.requests.active == 0


def test_release_without_acquire_is_an_error() -> None:
    limits = ResourceLimits(ResourceLimitsConfig())
    with pytest.raises(RuntimeError):
        limits.requests.release(Verdict.ADMIT)
    limits.requests.release(Verdict.REJECT)  # nothing was taken: a no-op


def test_negative_limit_rejected() -> None:
    with pytest.raises(ValueError):
        ResourceLimitsConfig(max_connections=-1)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.lists(st.booleans(), max_size=100))
def test_active_never_exceeds_limit(cap: int, ops: list[bool]) -> None:
    limits = ResourceLimits(ResourceLimitsConfig(max_requests=cap))
    held: list[Verdict] = []
    for acquire in ops:
        if acquire:
            v = limits.requests.try_acquire()
            if v.admitted:
                held.append(v)
        elif held:
            limits.requests.release(held.pop())
        assert 0 <= limits.requests.active <= cap
        assert limits.requests.active == len(held)
