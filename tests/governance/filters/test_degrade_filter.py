"""DegradeFilter: fallbacks when a rule rejects or a breaker is open; manual degradation."""

from __future__ import annotations

from typing import Any

import pytest
from govhelp import Terminal, call, chain, governance, rendered

from sofamesh.clock import FakeClock
from sofamesh.governance.filters.breaker import BreakerFilter
from sofamesh.governance.filters.degrade import DegradeFilter
from sofamesh.governance.filters.flow import FlowFilter
from sofamesh.governance.routing_rules import StaticResponse
from sofamesh.model import Invocation, Result, Status

pytestmark = pytest.mark.anyio

LIMIT = {"service": "orders", "count": 1, "direction": "outbound"}
CACHED = {"code": 200, "headers": {"content-type": "application/json"}, "body": '{"items": []}'}


def degraded(rules: dict[str, Any], terminal: Terminal | None = None) -> Any:
    clock = FakeClock()
    g = governance(rules, clock)
    term = terminal or Terminal()
    filters = [
        DegradeFilter(g, "outbound"),
        FlowFilter(g, clock, "outbound"),
        BreakerFilter(g, clock),
    ]
    return chain(filters, term), term, g


async def test_static_fallback_answers_a_rate_limited_call() -> None:
    rules = {
        "rate_limits": [LIMIT],
        "fallbacks": [{"name": "cached", "service": "orders", "response": CACHED}],
    }
    handler, term, g = degraded(rules)
    assert (await handler(call())).ok and len(term.calls) == 1
    answer = await handler(call())
    assert (
        answer.ok and rendered(answer).status == 200 and rendered(answer).body == b'{"items": []}'
    )
    assert (b"x-sofamesh-fallback", b"cached") in rendered(answer).headers
    assert (b"content-type", b"application/json") in rendered(answer).headers
    assert len(term.calls) == 1
    assert g.snapshot()["rules"]["fallbacks"][0]["served"] == 1


async def test_open_breaker_falls_back() -> None:
    rules = {
        "breakers": [{"service": "orders", "min_request_count": 2, "threshold": 0.1}],
        "fallbacks": [{"service": "orders", "response": {"code": 200, "body": "stale"}}],
    }
    handler, _, _ = degraded(rules, Terminal(Status.APP_ERROR))
    assert (await handler(call())).status is Status.APP_ERROR  # failures pass as they are
    await handler(call())
    assert rendered(await handler(call())).body == b"stale"


async def test_trigger_statuses_are_configurable() -> None:
    rules = {
        "fallbacks": [{"service": "orders", "when": ["app_error"], "response": {"body": "sorry"}}]
    }
    handler, _, _ = degraded(rules, Terminal(Status.APP_ERROR))
    assert rendered(await handler(call())).body == b"sorry"


async def test_forced_degradation_never_calls_the_provider() -> None:
    rules = {
        "fallbacks": [
            {"service": "orders", "force": True, "response": {"code": 503, "body": "off"}}
        ]
    }
    handler, term, g = degraded(rules)
    assert rendered(await handler(call())).status == 503 and term.calls == []
    assert g.snapshot()["rules"]["fallbacks"][0]["forced"] == 1


async def test_forced_without_an_answer_is_unavailable() -> None:
    handler, term, _ = degraded(
        {"fallbacks": [{"name": "off", "service": "orders", "force": True}]}
    )
    result = await handler(call())
    assert result.status is Status.UNAVAILABLE and "off" in result.detail and term.calls == []


async def test_forced_in_shadow_mode_calls_the_provider() -> None:
    rule = {"service": "orders", "force": True, "enforcement": {"shadow": True}, "response": {}}
    handler, term, g = degraded({"fallbacks": [rule]})
    assert (await handler(call())).ok and len(term.calls) == 1
    assert g.snapshot()["rules"]["fallbacks"][0]["shadowed"] == 1


async def test_method_rule_wins_over_service_rule() -> None:
    rules = {
        "rate_limits": [LIMIT],
        "fallbacks": [
            {"service": "orders", "response": {"body": "service"}},
            {"service": "orders", "method": "/pay", "response": {"body": "pay"}},
        ],
    }
    handler, _, _ = degraded(rules)
    await handler(call(method="/pay"))
    assert rendered(await handler(call(method="/pay"))).body == b"pay"
    assert rendered(await handler(call(method="/list"))).body == b"service"


async def test_fallbacks_registered_in_code() -> None:
    handler, _, g = degraded({"rate_limits": [LIMIT]})
    await handler(call())
    assert (await handler(call())).status is Status.RATE_LIMITED  # nothing to answer with yet
    g.set_fallback("orders", Result(Status.OK, code=200, payload="static value"))
    assert (await handler(call())).payload == "static value"

    seen: list[Status | None] = []

    def compute(inv: Invocation, result: Result | None) -> Result:
        seen.append(result.status if result else None)
        return Result(Status.OK, payload=f"computed for {inv.method}")

    g.set_fallback("orders", compute, method="/pay")
    assert (await handler(call(method="/pay"))).payload == "computed for /pay"
    assert seen == [Status.RATE_LIMITED]

    async def later(inv: Invocation, result: Result | None) -> Result:
        return Result(Status.OK, payload="awaited")

    g.set_fallback("orders", later)
    assert (await handler(call())).payload == "awaited"
    g.set_fallback("orders", StaticResponse(code=202, body="accepted"))
    assert rendered(await handler(call())).status == 202
    g.remove_fallback("orders")
    assert (await handler(call())).status is Status.RATE_LIMITED


async def test_code_fallback_beats_the_rules_static_response() -> None:
    rules = {
        "rate_limits": [LIMIT],
        "fallbacks": [{"service": "orders", "response": {"body": "doc"}}],
    }
    handler, _, g = degraded(rules)
    g.set_fallback("orders", Result(Status.OK, payload="code"))
    await handler(call())
    answer = await handler(call())
    assert answer.payload == "code" and answer.headers.get("x-sofamesh-fallback") == "fallbacks[0]"
