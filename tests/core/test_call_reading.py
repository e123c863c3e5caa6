"""`Invocation.now`: one clock reading for the way down, cleared by whatever may wait.

The stats filter takes it as the call starts; the filters below read it instead of the
clock. A filter that waits before passing the call on (a user's filter, a pacing wait, a
retry's back-off) leaves the filters below it a fresh reading, so deadlines and latencies
count from where they did when each filter read the clock itself.
"""

from __future__ import annotations

import pytest

from sofamesh.chain import Handler, build_chain
from sofamesh.clock import FakeClock
from sofamesh.filters.stats import StatsFilter
from sofamesh.filters.timeout import TimeoutFilter
from sofamesh.model import Invocation, Result, Status
from sofamesh.stats import Stats
from sofamesh.upstream.retry import RetryFilter

pytestmark = pytest.mark.anyio


class Policy:
    timeout = 10.0
    connect_retries = 2


def policy_for(_service: str) -> Policy:
    return Policy()


class Waits:
    """A user's filter (no `bind`): time passes before it hands the call on."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        self.clock.advance(self.seconds)
        return await call_next(inv)


def recorder(seen: list[tuple[float | None, float | None]]) -> Handler:
    async def terminal(inv: Invocation) -> Result:
        seen.append((inv.now, inv.deadline))
        return Result(Status.OK)

    return terminal


async def test_the_stats_filters_reading_serves_the_way_down_and_ends_with_the_call() -> None:
    clock, seen = FakeClock(), []
    inv = Invocation("http", "svc", "/")
    chain = build_chain(
        [StatsFilter(Stats(), "outbound", clock), TimeoutFilter(policy_for, clock, enforce=False)],
        recorder(seen),
    )
    assert (await chain(inv)).ok
    assert seen == [(1000.0, 1010.0)]  # the deadline counts from the call's reading
    assert inv.now is None  # not left behind for another chain to trust


async def test_a_filter_that_may_wait_leaves_a_fresh_reading_below_it() -> None:
    clock, seen = FakeClock(), []
    chain = build_chain(
        [
            StatsFilter(Stats(), "outbound", clock),
            Waits(clock, 3.0),
            TimeoutFilter(policy_for, clock, enforce=False),
        ],
        recorder(seen),
    )
    assert (await chain(Invocation("http", "svc", "/"))).ok
    # No shared reading past the wait: the timeout read the clock after it, as before.
    assert seen == [(None, 1013.0)]


async def test_each_retry_reads_the_clock_again() -> None:
    clock, seen = FakeClock(), []

    async def refused_then_ok(inv: Invocation) -> Result:
        seen.append((inv.now, None))
        if inv.attempt == 0:
            clock.advance(2.0)  # the first try took two seconds to fail
            return Result.failure(Status.CONNECT_FAILED, "refused")
        return Result(Status.OK)

    retry = RetryFilter(policy_for, Stats(), clock)
    chain = build_chain([StatsFilter(Stats(), "outbound", clock), retry], refused_then_ok)
    assert (await chain(Invocation("http", "svc", "/"))).ok
    assert seen == [(1000.0, None), (None, None)]  # the retry trusts no reading from before
