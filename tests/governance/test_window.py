"""The LeapArray-style rolling window: running totals must equal a brute-force sum."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.governance.window import RollingWindow


def test_counts_within_interval() -> None:
    w = RollingWindow(1.0, 2)
    w.add(10.1)
    w.add(10.6, amount=3)
    assert w.total(10.9) == 4
    assert w.total(11.2) == 3  # bucket [10.0, 10.5) left
    assert w.total(11.6) == 0


def test_jump_past_window_clears_everything() -> None:
    w = RollingWindow(1.0, 4, columns=2)
    w.add(5.0, 0, 2)
    w.add(5.0, 1, 7)
    assert w.totals(50.0) == (0, 0)


def test_reset_clears() -> None:
    w = RollingWindow(2.0, 4)
    w.add(1.0)
    w.reset()
    assert w.total(1.0) == 0


@pytest.mark.parametrize("args", [(0.0, 1), (1.0, 0), (float("nan"), 2)])
def test_rejects_bad_shape(args: tuple[float, int]) -> None:
    with pytest.raises(ValueError):
        RollingWindow(*args)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 8),
    st.lists(st.tuples(st.floats(0, 0.7), st.integers(0, 2), st.integers(1, 5)), max_size=120),
)
def test_totals_match_brute_force(buckets: int, steps: list[tuple[float, int, int]]) -> None:
    interval = 1.0
    width = interval / buckets
    w = RollingWindow(interval, buckets, columns=3)
    now = 100.0
    seen: list[tuple[int, int, int]] = []  # (bucket number, column, amount)
    for dt, col, amount in steps:
        now += dt
        w.add(now, col, amount)
        seen.append((int(now // width), col, amount))
        current = int(now // width)
        for c in range(3):
            expected = sum(a for b, cc, a in seen if cc == c and current - b < buckets)
            assert w.total(now, c) == expected
