"""FaultFilter: Envoy's fault injection per service, method and route, on request, with a cap."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from govhelp import Sleeps, Terminal, call, chain, governance, rendered

from sofamesh.clock import FakeClock
from sofamesh.governance.filters.fault import FaultFilter
from sofamesh.governance.filters.route import RouteFilter
from sofamesh.model import Status

pytestmark = pytest.mark.anyio


def faulty(
    rules: dict[str, Any], direction: str = "outbound", terminal: Terminal | None = None
) -> Any:
    clock = FakeClock()
    g = governance(rules, clock)
    sleeps = Sleeps(clock)
    term = terminal or Terminal()
    handler = chain([RouteFilter(g, clock), FaultFilter(g, clock, direction, sleep=sleeps)], term)
    return handler, term, sleeps, g, clock


async def test_abort_answers_with_the_protocol_code() -> None:
    rules = {"faults": [{"name": "chaos", "service": "orders", "abort": {"code": 503}}]}
    handler, term, _, _, _ = faulty(rules)
    result = await handler(call())
    assert result.status is Status.APP_ERROR and rendered(result).status == 503
    assert "chaos" in result.detail and term.calls == []


async def test_delay_is_slept_then_the_call_goes_on() -> None:
    rules = {"faults": [{"service": "orders", "delay": {"fixed_delay": 0.25}}]}
    handler, term, sleeps, g, _ = faulty(rules)
    assert (await handler(call())).ok
    assert sleeps.asked == [0.25] and len(term.calls) == 1
    assert g.snapshot()["rules"]["faults"][0]["delays_injected"] == 1


async def test_delay_past_the_deadline_ends_at_the_deadline() -> None:
    rules = {"faults": [{"service": "orders", "delay": {"fixed_delay": 5.0}}]}
    handler, term, sleeps, _, clock = faulty(rules)
    result = await handler(call(deadline=clock.now() + 1.0))
    assert result.status is Status.TIMEOUT and sleeps.asked == [1.0] and term.calls == []


async def test_percentage_applies_to_a_share() -> None:
    rules = {
        "faults": [{"service": "orders", "abort": {"status": "unavailable", "percentage": 20}}]
    }
    handler, _, _, _, _ = faulty(rules)
    aborted = sum([(await handler(call())).status is Status.UNAVAILABLE for _ in range(1000)])
    assert 150 < aborted < 250


async def test_only_when_the_request_asks() -> None:
    rules = {
        "faults": [
            {"service": "orders", "abort": {"from_header": True}, "delay": {"from_header": True}}
        ]
    }
    handler, _, sleeps, _, _ = faulty(rules)
    assert (await handler(call())).ok
    asked = await handler(
        call(
            headers={
                "x-sofamesh-fault-abort-request": "418",
                "x-sofamesh-fault-delay-request": "100",
            }
        )
    )
    assert rendered(asked).status == 418 and sleeps.asked == [0.1]


async def test_match_headers_and_method_scope() -> None:
    rules = {
        "faults": [
            {
                "service": "orders",
                "method": "/pay",
                "headers": {"x-test": "chaos"},
                "abort": {"code": 500},
            }
        ]
    }
    handler, _, _, _, _ = faulty(rules)
    assert (await handler(call(method="/pay"))).ok
    assert (await handler(call(method="/list", headers={"x-test": "chaos"}))).ok
    assert rendered(await handler(call(method="/pay", headers={"x-test": "chaos"}))).status == 500


async def test_route_scoped_fault_applies_to_that_route_only() -> None:
    rules = {
        "routes": [{"name": "beta", "service": "orders", "match": {"callers": ["beta"]}}],
        "faults": [{"service": "orders", "route": "beta", "abort": {"code": 500}}],
    }
    handler, _, _, _, _ = faulty(rules)
    assert (await handler(call(caller="web"))).ok
    assert rendered(await handler(call(caller="beta"))).status == 500


async def test_active_fault_cap() -> None:
    rules = {
        "faults": [{"service": "orders", "delay": {"fixed_delay": 1.0}, "max_active_faults": 1}]
    }
    gate = anyio.Event()
    handler, term, sleeps, g, _ = faulty(rules, terminal=Terminal(gate=gate))
    async with anyio.create_task_group() as tg:
        tg.start_soon(handler, call())
        tg.start_soon(handler, call())
        while term.entered < 2:
            await anyio.lowlevel.checkpoint()
        gate.set()
    assert sleeps.asked == [1.0]
    row = g.snapshot()["rules"]["faults"][0]
    assert row["faults_overflow"] == 1 and row["active_faults"] == 0


async def test_inbound_faults_need_direction_inbound() -> None:
    rules = {"faults": [{"service": "orders", "direction": "inbound", "abort": {"code": 500}}]}
    handler, _, _, _, _ = faulty(rules, direction="outbound")
    assert (await handler(call())).ok
    handler, _, _, _, _ = faulty(rules, direction="inbound")
    assert rendered(await handler(call())).status == 500
