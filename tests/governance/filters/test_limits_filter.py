"""LimitsFilter: Envoy's max_requests per service; max_retries through the retry filter."""

from __future__ import annotations

import anyio
import pytest
from govhelp import Clusters, Sleeps, Terminal, call, chain, endpoints, governance

from sofamesh.clock import FakeClock
from sofamesh.config.model import PolicyConfig
from sofamesh.governance.compose import retry_filter
from sofamesh.governance.filters.limits import LimitsFilter
from sofamesh.governance.filters.route import RouteFilter
from sofamesh.model import Result, Status
from sofamesh.stats import Stats
from sofamesh.upstream.balance import BalanceFilter

pytestmark = pytest.mark.anyio


async def test_max_requests_answers_overloaded_naming_the_rule() -> None:
    g = governance(
        {"resource_limits": [{"name": "orders-cap", "service": "orders", "max_requests": 2}]}
    )
    gate = anyio.Event()
    term = Terminal(gate=gate)
    handler = chain([LimitsFilter(g)], term)
    async with anyio.create_task_group() as tg:
        tg.start_soon(handler, call())
        tg.start_soon(handler, call())
        while term.entered < 2:
            await anyio.lowlevel.checkpoint()
        third = await handler(call())
        assert third.status is Status.OVERLOADED and "orders-cap" in third.detail
        gate.set()
    row = g.snapshot()["rules"]["resource_limits"][0]
    assert row["overflow"] == 1 and row["in_flight"] == 0


async def test_other_services_are_not_limited() -> None:
    g = governance({"resource_limits": [{"service": "orders", "max_requests": 0}]})
    handler = chain([LimitsFilter(g)], Terminal())
    assert (await handler(call(service="users"))).ok
    assert (await handler(call())).status is Status.OVERLOADED


async def test_max_retries_caps_retries_in_flight() -> None:
    clock = FakeClock()
    rules = {
        "routes": [{"service": "orders", "retry": {"attempts": 2, "budget": None}}],
        "resource_limits": [{"service": "orders", "max_retries": 1}],
    }
    g = governance(rules, clock)
    gate = anyio.Event()
    term = Terminal(Result(Status.APP_ERROR, code=503), gate=gate)
    gateway = {"http": frozenset({503})}.__getitem__
    retry = retry_filter(
        g, lambda s: PolicyConfig(), Stats(), clock, gateway_codes=gateway, sleep=Sleeps()
    )
    balance = BalanceFilter(Clusters(clock, orders=endpoints(n=4)), clock)  # type: ignore[arg-type]
    handler = chain([RouteFilter(g, clock), retry, balance], term)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(handler, call())
        while term.entered < 3:
            await anyio.lowlevel.checkpoint()
        gate.set()
    assert term.entered == 4  # one retry at a time
    rows = g.snapshot()["rules"]
    assert rows["resource_limits"][0]["retry_overflow"] == 2
    assert rows["resource_limits"][0]["retries_in_flight"] == 0
    assert rows["routes"][0]["retry_overflow"] == 2
