"""HotParamFilter: a QPS limit per value of a header or query argument (Sentinel ParamFlowRule)."""

from __future__ import annotations

from typing import Any

import pytest
from govhelp import Terminal, call, chain, governance

from sofamesh.clock import FakeClock
from sofamesh.codecs.http1 import HttpRequest
from sofamesh.governance.filters.hotparam import HotParamFilter, query_value
from sofamesh.model import Status

pytestmark = pytest.mark.anyio


def limited(rule: dict[str, Any], clock: FakeClock) -> Any:
    g = governance({"hot_params": [{"service": "orders", **rule}]}, clock)
    return chain([HotParamFilter(g, clock, "inbound")], Terminal()), g


async def test_each_header_value_has_its_own_limit() -> None:
    clock = FakeClock()
    handler, _ = limited({"name": "per-user", "header": "X-User", "count": 2}, clock)

    async def passes(user: str) -> list[bool]:
        return [(await handler(call(headers={"x-user": user}))).ok for _ in range(3)]

    assert await passes("alice") == [True, True, False]
    assert await passes("bob") == [True, True, False]
    rejected = await handler(call(headers={"x-user": "alice"}))
    assert rejected.status is Status.RATE_LIMITED
    assert "per-user" in rejected.detail and "'alice'" in rejected.detail
    clock.advance(1.5)  # refilled after the duration
    assert (await handler(call(headers={"x-user": "alice"}))).ok


async def test_overrides_and_missing_parameter() -> None:
    clock = FakeClock()
    handler, _ = limited(
        {"header": "x-user", "count": 5, "overrides": {"bot": 0, "vip": 50}}, clock
    )
    assert (await handler(call(headers={"x-user": "bot"}))).status is Status.RATE_LIMITED
    assert all([(await handler(call(headers={"x-user": "vip"}))).ok for _ in range(50)])
    assert all([(await handler(call())).ok for _ in range(20)])  # no parameter: not limited


async def test_query_argument_as_the_parameter() -> None:
    clock = FakeClock()
    handler, g = limited({"query": "sku", "count": 1}, clock)

    def req(target: str) -> Any:
        return call(payload=HttpRequest(method="GET", target=target))

    assert (await handler(req("/items?sku=a%20b&x=1"))).ok
    assert (await handler(req("/items?x=2&sku=a+b"))).status is Status.RATE_LIMITED
    assert (await handler(req("/items?sku=c"))).ok
    assert g.snapshot()["rules"]["hot_params"][0]["tracked_values"] == 2


def test_query_value_parsing() -> None:
    assert query_value(HttpRequest(method="GET", target="/a?k=1&k=2"), "k") == "1"
    assert query_value(HttpRequest(method="GET", target="/a"), "k") is None
    assert query_value(b"not a request", "k") is None
