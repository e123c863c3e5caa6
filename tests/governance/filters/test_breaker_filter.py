"""BreakerFilter: Sentinel circuit breaking per service and method, through the chain."""

from __future__ import annotations

import anyio
import pytest
from govhelp import Terminal, call, chain, governance

from sofamesh.clock import FakeClock
from sofamesh.governance.filters.breaker import BreakerFilter
from sofamesh.model import Status

pytestmark = pytest.mark.anyio

ERRORS = {"strategy": "error_ratio", "threshold": 0.5, "min_request_count": 4}


async def test_opens_on_error_ratio_and_names_the_rule() -> None:
    clock = FakeClock()
    g = governance({"breakers": [{"name": "orders-errors", "service": "orders", **ERRORS}]}, clock)
    term = Terminal(Status.APP_ERROR)
    handler = chain([BreakerFilter(g, clock)], term)
    for _ in range(4):
        assert (await handler(call())).status is Status.APP_ERROR
    result = await handler(call())
    assert result.status is Status.CIRCUIT_OPEN
    assert "orders-errors" in result.detail and "orders" in result.detail
    assert len(term.calls) == 4  # the open breaker did not call the provider


async def test_half_open_probe_after_recovery_timeout_closes_on_success() -> None:
    clock = FakeClock()
    rule = {"service": "orders", **ERRORS, "recovery_timeout": 5.0}
    g = governance({"breakers": [rule]}, clock)
    term = Terminal(
        Status.APP_ERROR, Status.APP_ERROR, Status.APP_ERROR, Status.APP_ERROR, Status.OK
    )
    handler = chain([BreakerFilter(g, clock)], term)
    for _ in range(4):
        await handler(call())
    clock.advance(4.9)
    assert (await handler(call())).status is Status.CIRCUIT_OPEN
    clock.advance(0.2)
    assert (await handler(call())).status is Status.OK  # the probe
    assert g.breaker_states()["orders"][0]["state"] == "closed"


async def test_failed_probe_reopens() -> None:
    clock = FakeClock()
    g = governance({"breakers": [{"service": "orders", **ERRORS, "recovery_timeout": 1.0}]}, clock)
    handler = chain([BreakerFilter(g, clock)], Terminal(Status.TIMEOUT))
    for _ in range(4):
        await handler(call())
    clock.advance(1.0)
    assert (await handler(call())).status is Status.TIMEOUT  # probe ran and failed
    assert (await handler(call())).status is Status.CIRCUIT_OPEN


async def test_each_method_has_its_own_breaker() -> None:
    clock = FakeClock()
    g = governance({"breakers": [{"service": "orders", "method": "*", **ERRORS}]}, clock)
    handler = chain([BreakerFilter(g, clock)], Terminal(Status.APP_ERROR))
    for _ in range(4):
        await handler(call(method="/a"))
    assert (await handler(call(method="/a"))).status is Status.CIRCUIT_OPEN
    assert (await handler(call(method="/b"))).status is Status.APP_ERROR
    methods = {row["method"]: row["state"] for row in g.breaker_states()["orders"]}
    assert methods == {"/a": "open", "/b": "closed"}


async def test_service_breaker_and_method_breaker_both_apply() -> None:
    clock = FakeClock()
    g = governance(
        {
            "breakers": [
                {"service": "orders", **ERRORS, "min_request_count": 100},
                {"name": "slow-pay", "service": "orders", "method": "/pay", **ERRORS},
            ]
        },
        clock,
    )
    handler = chain([BreakerFilter(g, clock)], Terminal(Status.APP_ERROR))
    for _ in range(4):
        await handler(call(method="/pay"))
    blocked = await handler(call(method="/pay"))
    assert blocked.status is Status.CIRCUIT_OPEN and "slow-pay" in blocked.detail
    assert (await handler(call(method="/list"))).status is Status.APP_ERROR


async def test_slow_calls_open_a_slow_request_ratio_breaker() -> None:
    clock = FakeClock()
    rule = {
        "service": "orders",
        "strategy": "slow_request_ratio",
        "threshold": 0.5,
        "max_response_time": 0.1,
        "min_request_count": 2,
    }
    g = governance({"breakers": [rule]}, clock)

    async def slow(inv: object) -> object:
        clock.advance(0.2)
        return await Terminal()(inv)  # type: ignore[arg-type]

    handler = chain([BreakerFilter(g, clock)], slow)  # type: ignore[arg-type]
    await handler(call())
    await handler(call())
    assert (await handler(call())).status is Status.CIRCUIT_OPEN


async def test_shadow_mode_counts_but_lets_calls_through() -> None:
    clock = FakeClock()
    rule = {"service": "orders", **ERRORS, "enforcement": {"shadow": True}}
    g = governance({"breakers": [rule]}, clock)
    term = Terminal(Status.APP_ERROR)
    handler = chain([BreakerFilter(g, clock)], term)
    for _ in range(8):
        assert (await handler(call())).status is Status.APP_ERROR
    row = g.breaker_states()["orders"][0]
    assert row["state"] == "open" and row["shadowed"] == 4 and row["rejected"] == 0
    assert len(term.calls) == 8


async def test_a_cancelled_probe_frees_its_slot() -> None:
    clock = FakeClock()
    g = governance({"breakers": [{"service": "orders", **ERRORS, "recovery_timeout": 1.0}]}, clock)
    gate = anyio.Event()
    failing = chain([BreakerFilter(g, clock)], Terminal(Status.APP_ERROR))
    for _ in range(4):
        await failing(call())
    clock.advance(1.0)
    held = Terminal(gate=gate)
    handler = chain([BreakerFilter(g, clock)], held)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await handler(call())  # the probe is admitted, then cancelled at the terminal
    assert held.entered == 1
    gate.set()
    assert (await handler(call())).status is Status.OK  # a new probe may go at once


async def test_no_rule_for_the_service_passes_untouched() -> None:
    clock = FakeClock()
    g = governance({"breakers": [{"service": "orders", **ERRORS}]}, clock)
    term = Terminal(Status.APP_ERROR)
    handler = chain([BreakerFilter(g, clock)], term)
    for _ in range(10):
        assert (await handler(call(service="users"))).status is Status.APP_ERROR
    assert len(term.calls) == 10


async def test_lowercased_service_name_finds_the_rule() -> None:
    clock = FakeClock()
    g = governance({"breakers": [{"service": "com.example.Orders", **ERRORS}]}, clock)
    handler = chain([BreakerFilter(g, clock)], Terminal(Status.APP_ERROR))
    for _ in range(4):
        await handler(call(service="com.example.orders"))  # as a Host header brings it
    assert (await handler(call(service="com.example.Orders"))).status is Status.CIRCUIT_OPEN
