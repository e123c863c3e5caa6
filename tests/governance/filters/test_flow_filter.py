"""FlowFilter: Sentinel flow rules per service, method and caller, inbound and outbound."""

from __future__ import annotations

import anyio
import pytest
from govhelp import Sleeps, Terminal, call, chain, governance

from sofamesh.clock import FakeClock
from sofamesh.governance.filters.flow import FlowFilter
from sofamesh.model import Invocation, Result, Status

pytestmark = pytest.mark.anyio


def qps(count: float, **kw: object) -> dict[str, object]:
    return {"service": "orders", "count": count, "direction": "inbound", **kw}


async def test_qps_limit_rejects_with_rate_limited_naming_the_rule() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(3, name="orders-qps")]}, clock)
    handler = chain([FlowFilter(g, clock, "inbound")], Terminal())
    statuses = [(await handler(call())).status for _ in range(4)]
    assert statuses == [Status.OK] * 3 + [Status.RATE_LIMITED]
    rejected = await handler(call())
    assert rejected.detail == "orders: rate limited by rule orders-qps"
    clock.advance(1.0)  # the sliding window moves on
    assert (await handler(call())).status is Status.OK


async def test_rules_of_the_other_direction_do_not_apply() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(1)]}, clock)
    handler = chain([FlowFilter(g, clock, "outbound")], Terminal())
    assert all([(await handler(call())).ok for _ in range(5)])


async def test_per_method_rule_and_each_method() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(1, method="/pay"), qps(2, method="*")]}, clock)
    handler = chain([FlowFilter(g, clock, "inbound")], Terminal())
    # /pay has its own explicit rule; every other method its own limiter of 2.
    assert [(await handler(call(method="/pay"))).ok for _ in range(2)] == [True, False]
    assert [(await handler(call(method="/a"))).ok for _ in range(3)] == [True, True, False]
    assert [(await handler(call(method="/b"))).ok for _ in range(3)] == [True, True, False]


async def test_caller_specific_default_and_other_callers() -> None:
    clock = FakeClock()
    rules = [qps(100), qps(1, caller="batch"), qps(2, caller="other")]
    g = governance({"rate_limits": rules}, clock)
    handler = chain([FlowFilter(g, clock, "inbound")], Terminal())

    async def passes(caller: str, n: int) -> list[bool]:
        return [(await handler(call(caller=caller))).ok for _ in range(n)]

    assert await passes("batch", 2) == [True, False]  # its own limit; "other" is not it
    assert await passes("web", 3) == [True, True, False]  # an "other" caller: its own 2
    assert await passes("mobile", 3) == [True, True, False]  # another one, counted apart
    assert await passes("", 5) == [True] * 5  # no caller: not "other", only the default


async def test_rejection_cancels_admissions_of_earlier_rules() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(2), qps(1, method="/pay")]}, clock)
    handler = chain([FlowFilter(g, clock, "inbound")], Terminal())
    assert (await handler(call(method="/pay"))).ok
    assert not (await handler(call(method="/pay"))).ok  # the method rule rejects...
    assert (await handler(call(method="/list"))).ok  # ...so the service rule did not count it
    rows = {r["rule"]: r for r in g.snapshot()["rules"]["rate_limits"]}
    assert rows["rate_limits[0]"]["passed"] == 2


async def test_concurrency_limit_holds_a_slot_until_the_call_returns() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(2, grade="concurrency")]}, clock)
    gate = anyio.Event()
    held = Terminal(gate=gate)
    handler = chain([FlowFilter(g, clock, "inbound")], held)
    results = []

    async def one() -> None:
        results.append((await handler(call())).status)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
        while held.entered < 2:
            await anyio.lowlevel.checkpoint()
        third = await handler(call())
        assert third.status is Status.RATE_LIMITED
        gate.set()
    assert results == [Status.OK, Status.OK]
    assert (await handler(call())).ok  # slots were given back


async def test_pacing_spaces_calls_by_sleeping_the_delay() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(10, behavior="pacing", max_queueing_time=1.0)]}, clock)
    sleeps = Sleeps()
    handler = chain([FlowFilter(g, clock, "inbound", sleep=sleeps)], Terminal())
    for _ in range(4):
        assert (await handler(call())).ok
    assert sleeps.asked == pytest.approx([0.1, 0.2, 0.3])


async def test_pacing_never_waits_past_the_callers_deadline() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(10, behavior="pacing", max_queueing_time=1.0)]}, clock)
    sleeps = Sleeps()
    handler = chain([FlowFilter(g, clock, "inbound", sleep=sleeps)], Terminal())
    assert (await handler(call())).ok
    late = await handler(call(deadline=clock.now() + 0.05))  # its turn is 0.1 s away
    assert late.status is Status.RATE_LIMITED and "deadline" in late.detail
    assert sleeps.asked == []
    assert (await handler(call(deadline=clock.now() + 0.5))).ok  # its turn fits
    # The rejected call's turn stays taken, as in Sentinel (PacingLimiter.cancel keeps it).
    assert sleeps.asked == pytest.approx([0.2])


async def test_a_paced_call_leaves_the_filters_below_a_reading_from_after_its_wait() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(10, behavior="pacing", max_queueing_time=1.0)]}, clock)
    seen: list[float | None] = []

    async def terminal(inv: Invocation) -> Result:
        seen.append(inv.now)
        return Result(Status.OK)

    handler = chain([FlowFilter(g, clock, "inbound", sleep=Sleeps(clock))], terminal)
    for _ in range(2):
        inv = call()
        inv.now = clock.now()  # as the stats filter above it leaves it
        assert (await handler(inv)).ok
    # The first went at once, with the call's reading; the second waited its 0.1 s turn,
    # so the reading from before the wait is gone and whatever reads the time reads it anew.
    assert seen == [1000.0, None]


async def test_warm_up_starts_at_a_third_of_the_count() -> None:
    clock = FakeClock(start=1000.0)
    g = governance({"rate_limits": [qps(30, behavior="warm_up")]}, clock)
    handler = chain([FlowFilter(g, clock, "inbound")], Terminal())
    passed = sum([(await handler(call())).ok for _ in range(30)])
    assert passed == 10  # cold: count / cold_factor


async def test_enforced_share_zero_is_shadow_mode() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(1, enforcement={"enforced_fraction": 0.0})]}, clock)
    handler = chain([FlowFilter(g, clock, "inbound")], Terminal())
    assert all([(await handler(call())).ok for _ in range(5)])
    row = g.snapshot()["rules"]["rate_limits"][0]
    assert row["shadowed"] == 4 and row["rejected"] == 0 and row["passed"] == 1


async def test_a_service_wide_limit_counts_every_method_and_caller_together() -> None:
    clock = FakeClock()
    g = governance({"rate_limits": [qps(3)]}, clock)
    handler = chain([FlowFilter(g, clock, "inbound")], Terminal())
    calls = [call(method="/a", caller="web"), call(method="/b", caller="batch"), call(method="/c")]
    assert [(await handler(c)).ok for c in calls] == [True] * 3
    assert not (await handler(call(method="/d", caller="mobile"))).ok
