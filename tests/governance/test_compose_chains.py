"""The composed chains, as Runtime builds them: the filters interact in the documented order."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from sofamesh.chain import Filter, Handler, build_chain
from sofamesh.clock import FakeClock
from sofamesh.config.model import PolicyConfig
from sofamesh.filters.deadline import InboundDeadlineFilter
from sofamesh.filters.stats import StatsFilter
from sofamesh.filters.timeout import TimeoutFilter
from sofamesh.governance.compose import inbound_filters, outbound_filters, retry_filter
from sofamesh.governance.holder import Governance
from sofamesh.model import Result, Status
from sofamesh.stats import Stats
from sofamesh.upstream.balance import BalanceFilter

sys.path.insert(0, str(Path(__file__).parent / "filters"))
from govhelp import Clusters, Sleeps, Terminal, call, endpoints, governance, rendered

pytestmark = pytest.mark.anyio

POLICY = PolicyConfig()
GATEWAY = {"http": frozenset({502, 503, 504})}  # what the runtime passes in for HTTP


def outbound(g: Governance, clock: FakeClock, term: Any, tg: Any = None) -> Handler:
    """`Runtime.outbound_chain(extra=outbound_filters(...))` with retry_filter in place."""
    stats = Stats()
    filters: list[Filter] = [
        StatsFilter(stats, "outbound", clock),
        *outbound_filters(g, clock, task_group=tg, sleep=Sleeps(clock)),
        TimeoutFilter(lambda s: POLICY, clock),
        retry_filter(
            g,
            lambda s: POLICY,
            stats,
            clock,
            gateway_codes=GATEWAY.__getitem__,
            sleep=Sleeps(clock),
        ),
        BalanceFilter(Clusters(clock, orders=endpoints(n=3, version=lambda i: f"v{i % 2}")), clock),  # type: ignore[arg-type]
    ]
    return build_chain(filters, term)


async def test_injected_faults_trip_the_breaker_and_the_fallback_answers() -> None:
    clock = FakeClock()
    g = governance(
        {
            "faults": [{"service": "orders", "abort": {"code": 503}}],
            "breakers": [{"service": "orders", "min_request_count": 3, "threshold": 0.5}],
            "fallbacks": [{"name": "cached", "service": "orders", "response": {"body": "cached"}}],
        },
        clock,
    )
    term = Terminal()
    handler = outbound(g, clock, term)
    statuses = [(await handler(call())).status for _ in range(3)]
    assert statuses == [Status.APP_ERROR] * 3  # injected aborts pass through as failures
    answer = await handler(call())
    assert rendered(answer).body == b"cached" and term.calls == []
    rules = g.snapshot()["rules"]
    assert rules["faults"][0]["aborts_injected"] == 3
    assert rules["breakers"][0]["state"] == "open" and rules["fallbacks"][0]["served"] == 1


async def test_route_retry_and_subset_through_the_whole_chain() -> None:
    clock = FakeClock()
    g = governance(
        {
            "routes": [
                {
                    "service": "orders",
                    "split": [{"subset": {"version": "v0"}}],
                    "retry": {"attempts": 3, "retry_on": ["gateway_error"]},
                }
            ]
        },
        clock,
    )
    term = Terminal(Result(Status.APP_ERROR, code=502), Status.OK)
    result = await outbound(g, clock, term)(call())
    assert result.ok
    assert [e.version for e in term.endpoints if e] == ["v0", "v0"]
    assert len(set(term.endpoints)) == 2  # the two v0 endpoints, each once


async def test_mirror_in_the_composed_chain() -> None:
    clock = FakeClock()
    g = governance(
        {
            "routes": [
                {
                    "service": "orders",
                    "split": [{"subset": {"version": "v0"}}],
                    "mirror": {"subset": {"version": "v1"}},
                }
            ]
        },
        clock,
    )
    term = Terminal()
    async with anyio.create_task_group() as tg:
        assert (await outbound(g, clock, term, tg)(call())).ok
    assert sorted(e.version for e in term.endpoints if e) == ["v0", "v1"]


async def test_inbound_chain_auth_then_limits_then_fallback() -> None:
    clock = FakeClock()
    g = governance(
        {
            "auth": {"inbound": {"rules": [{"service": "orders", "allow": ["web"]}]}},
            "rate_limits": [{"service": "orders", "count": 1}],
            "fallbacks": [
                {
                    "service": "orders",
                    "direction": "inbound",
                    "when": ["rate_limited"],
                    "response": {"code": 503, "body": "busy"},
                }
            ],
        },
        clock,
    )
    term = Terminal()
    filters: list[Filter] = [
        StatsFilter(Stats(), "inbound", clock),
        InboundDeadlineFilter(clock),
        *inbound_filters(g, clock),
    ]
    handler = build_chain(filters, term)
    assert (await handler(call(caller="intruder"))).status is Status.UNAUTHORIZED
    assert (await handler(call(caller="web"))).ok
    busy = await handler(call(caller="web"))
    assert rendered(busy).status == 503 and rendered(busy).body == b"busy"
    assert len(term.calls) == 1


async def test_no_rules_changes_nothing() -> None:
    clock = FakeClock()
    g = Governance(clock=clock)
    term = Terminal(Status.CONNECT_FAILED, Status.OK)
    inv = call(idempotent=False)
    assert (await outbound(g, clock, term)(inv)).ok  # connect failures still retried
    assert inv.route is None and len(term.calls) == 2


async def test_visibility_for_the_admin_api() -> None:
    clock = FakeClock()
    g = governance(
        {
            "version": "v9",
            "breakers": [{"service": "orders", "method": "*"}],
            "rate_limits": [{"service": "orders", "count": 10, "direction": "outbound"}],
        },
        clock,
    )
    await outbound(g, clock, Terminal())(call(method="/a"))
    status = g.status()
    assert status["version"] == "v9" and status["last_error"] is None
    assert g.breaker_states()["orders"][0]["method"] == "/a"
    text = g.prometheus()
    assert 'sofamesh_governance_rules_info{version="v9",origin="test"} 1' in text
    assert (
        'sofamesh_governance_breakers_state{rule="breakers[0]",service="orders",method="/a",'
        'state="closed"} 1' in text
    )
    assert "# TYPE sofamesh_governance_rate_limits_passed_total counter" in text
    assert (
        'sofamesh_governance_rate_limits_passed_total{rule="rate_limits[0]",service="orders",'
        'method="",caller="default",direction="outbound"} 1'
    ) in text
    assert g.snapshot()["rules"]["rate_limits"][0]["passed"] == 1


def names(filters: list[Filter]) -> list[str]:
    return [type(f).__name__ for f in filters]


async def test_filters_keep_their_order_in_each_chain() -> None:
    g, clock = governance({}), FakeClock()
    async with anyio.create_task_group() as tg:
        outbound = names(outbound_filters(g, clock, task_group=tg))
        tg.cancel_scope.cancel()
    assert outbound == [
        "AuthFilter",
        "RouteFilter",
        "DegradeFilter",
        "FlowFilter",
        "HotParamFilter",
        "LimitsFilter",
        "BreakerFilter",
        "FaultFilter",
        "MirrorFilter",
    ]
    assert "MirrorFilter" not in names(outbound_filters(g, clock))  # no task group to copy in
    assert names(inbound_filters(g, clock)) == [
        "AuthFilter",
        "DegradeFilter",
        "FlowFilter",
        "HotParamFilter",
        "FaultFilter",
    ]


async def test_only_the_filters_the_rules_use_are_composed() -> None:
    clock = FakeClock()
    assert outbound_filters(governance({}), clock, in_use_only=True) == []
    g = governance({"load_balancing": [{"service": "orders", "hash": {"header": "x-user"}}]})
    async with anyio.create_task_group() as tg:
        composed = names(outbound_filters(g, clock, task_group=tg, in_use_only=True))
        tg.cancel_scope.cancel()
    assert composed == ["RouteFilter"]  # balancing needs the route filter, not mirroring
    g = governance(
        {
            "breakers": [{"service": "orders"}],
            "faults": [{"service": "orders", "abort": {"code": 503}}],
        }
    )
    assert names(outbound_filters(g, clock, in_use_only=True)) == ["BreakerFilter", "FaultFilter"]
    assert names(inbound_filters(g, clock, in_use_only=True)) == ["FaultFilter"]
    g.set_fallback("orders", lambda inv, result: Result(Status.OK))
    assert names(inbound_filters(g, clock, in_use_only=True)) == ["DegradeFilter", "FaultFilter"]
