"""RouteFilter + BalanceFilter: matching, subsets, tag routing, direct response, timeout."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from govhelp import Clusters, Terminal, call, chain, endpoints, governance, rendered

from sofamesh.clock import FakeClock
from sofamesh.endpoint import Endpoint
from sofamesh.governance.filters.route import RouteFilter
from sofamesh.governance.filters.state import Options
from sofamesh.governance.holder import Governance
from sofamesh.model import Status
from sofamesh.upstream.balance import BalanceFilter

pytestmark = pytest.mark.anyio

V1, V2 = endpoints(n=2, version=lambda i: f"v{i + 1}")


def routed(rules: dict[str, Any], eps: list[Endpoint], clock: FakeClock | None = None) -> Any:
    clock = clock or FakeClock()
    g = governance(rules, clock)
    term = Terminal()
    clusters = Clusters(clock, orders=eps)
    handler = chain([RouteFilter(g, clock), BalanceFilter(clusters, clock)], term)  # type: ignore[arg-type]
    return handler, term, g, clusters


def route(**kw: Any) -> dict[str, Any]:
    return {"service": "orders", **kw}


async def test_method_exact_prefix_and_regex_choose_the_subset() -> None:
    to_v2 = {"split": [{"subset": {"version": "v2"}}]}
    rules = {
        "routes": [
            route(match={"method": {"exact": "/a"}}, **to_v2),
            route(match={"method": {"prefix": "/beta/"}}, **to_v2),
            route(match={"method": {"regex": "/items/[0-9]+"}}, **to_v2),
            route(split=[{"subset": {"version": "v1"}}]),
        ]
    }
    handler, term, _, _ = routed(rules, [V1, V2])
    for method in ("/a", "/beta/x", "/items/42"):
        await handler(call(method=method))
    for method in ("/ab", "/alpha/x", "/items/42x"):
        await handler(call(method=method))
    assert term.endpoints == [V2] * 3 + [V1] * 3


async def test_header_matchers_and_callers() -> None:
    to_v2 = {"split": [{"subset": {"version": "v2"}}]}
    rules = {
        "routes": [
            route(match={"headers": [{"name": "X-Canary", "present": True}]}, **to_v2),
            route(match={"headers": [{"name": "x-user", "regex": "7[0-9]"}]}, **to_v2),
            route(match={"headers": [{"name": "x-region", "prefix": "eu-"}]}, **to_v2),
            route(match={"callers": ["beta-app"]}, **to_v2),
            route(
                match={"headers": [{"name": "x-debug", "present": False}]},
                split=[{"subset": {"version": "v1"}}],
            ),
        ]
    }
    handler, term, _, _ = routed(rules, [V1, V2])
    await handler(call(headers={"x-canary": ""}))
    await handler(call(headers={"x-user": "71"}))
    await handler(call(headers={"x-region": "eu-west"}))
    await handler(call(caller="beta-app"))
    await handler(call(headers={"x-user": "7"}))
    await handler(call(headers={"x-region": "us-east"}))
    assert term.endpoints == [V2] * 4 + [V1] * 2


async def test_weighted_split_follows_weights() -> None:
    rules = {
        "routes": [
            route(
                split=[
                    {"subset": {"version": "v1"}, "weight": 90},
                    {"subset": {"version": "v2"}, "weight": 10},
                ]
            )
        ]
    }
    handler, term, _, _ = routed(rules, [V1, V2])
    for _ in range(2000):
        await handler(call())
    share = Counter(term.endpoints)[V2] / 2000
    assert 0.08 < share < 0.12


async def test_a_split_of_one_entry_draws_no_random_number() -> None:
    clock = FakeClock()
    g = Governance(clock=clock, options=Options(rand=_no_draw))
    assert g.load({"routes": [route(split=[{"subset": {"version": "v2"}}])]}, "test")
    term = Terminal()
    clusters = Clusters(clock, orders=[V1, V2])
    handler = chain([RouteFilter(g, clock), BalanceFilter(clusters, clock)], term)  # type: ignore[arg-type]
    for _ in range(3):
        await handler(call())
    assert term.endpoints == [V2] * 3


def _no_draw() -> float:
    raise AssertionError("a split of one entry has nothing to draw")


async def test_canary_by_tag_subset_and_blue_green_switch() -> None:
    blue, green = endpoints(n=2, tags=lambda i: ["blue"] if i == 0 else ["green"])
    handler, term, g, _ = routed(
        {"routes": [route(split=[{"subset": {"tags": ["blue"]}}])]}, [blue, green]
    )
    await handler(call())
    assert g.load({"routes": [route(split=[{"subset": {"tags": ["green"]}}])]}, "test")
    await handler(call())
    assert term.endpoints == [blue, green]


async def test_empty_subset_is_no_endpoint_unless_fallback_any() -> None:
    handler, term, g, _ = routed({"routes": [route(split=[{"subset": {"version": "v9"}}])]}, [V1])
    assert (await handler(call())).status is Status.NO_ENDPOINT
    g.load({"routes": [route(split=[{"subset": {"version": "v9"}}], subset_fallback="any")]}, "t")
    assert (await handler(call())).ok and term.endpoints == [V1]
    # Again, once the empty subset has been worked out: a fallback is no single-subset target.
    assert (await handler(call())).ok and term.endpoints == [V1, V1]


async def test_ejected_subset_falls_back_in_preference_order_then_panics() -> None:
    clock = FakeClock()
    rules = {"routes": [route(split=[{"subset": {"version": "v2"}}], subset_fallback="any")]}
    handler, term, _, clusters = routed(rules, [V1, V2], clock)
    await handler(call())
    outlier = clusters.get("orders").outlier
    for _ in range(5):  # consecutive failures eject it
        outlier.record(V2.key, True, clock.now())
    assert outlier.is_ejected(V2.key, clock.now())
    await handler(call())
    assert term.endpoints == [V2, V1]  # v2 ejected: the fallback subset (any) takes it


async def test_retry_never_picks_a_tried_endpoint_while_others_exist() -> None:
    three = endpoints(n=3)
    handler, term, _, _ = routed({"routes": [route()]}, three)
    inv = call()
    for _ in range(3):
        await handler(inv)
    assert sorted(e.port for e in term.endpoints if e) == [9000, 9001, 9002]
    await handler(inv)  # every one tried: any again
    assert len(term.endpoints) == 4


async def test_direct_response_answers_without_calling() -> None:
    response = {"code": 503, "headers": {"retry-after": "30"}, "body": "down for maintenance"}
    handler, term, g, _ = routed({"routes": [route(name="maint", direct_response=response)]}, [V1])
    result = await handler(call())
    assert term.calls == []
    assert rendered(result).status == 503 and rendered(result).body == b"down for maintenance"
    assert (b"retry-after", b"30") in rendered(result).headers
    assert g.snapshot()["rules"]["routes"][0]["direct"] == 1


async def test_route_timeout_tightens_the_deadline_only() -> None:
    clock = FakeClock()
    handler, term, _, _ = routed({"routes": [route(timeout=2.0)]}, [V1], clock)
    await handler(call())
    await handler(call(deadline=clock.now() + 1.0))
    assert term.calls[0].deadline == clock.now() + 2.0
    assert term.calls[1].deadline == clock.now() + 1.0


async def test_no_route_matches_leaves_the_cluster_to_pick() -> None:
    handler, term, _, _ = routed({"routes": [route(match={"method": {"exact": "/x"}})]}, [V1])
    inv = call(method="/y")
    await handler(inv)
    assert inv.route is None and term.endpoints == [V1]


# -- Dubbo tag routing ------------------------------------------------------------------------

GRAY, PLAIN, STATIC = (
    Endpoint("orders", "10.0.0.1", 9000),  # in the dynamic group "gray" by address
    Endpoint("orders", "10.0.0.2", 9000),  # no tag
    Endpoint("orders", "10.0.0.3", 9000, tags=["blue"]),  # a static tag
)
TAGS = {"routes": [route(tag={"groups": [{"name": "gray", "addresses": ["10.0.0.1:9000"]}]})]}


async def test_tagged_request_goes_to_endpoints_with_that_tag() -> None:
    handler, term, _, _ = routed(TAGS, [GRAY, PLAIN, STATIC])
    for _ in range(3):
        await handler(call(headers={"x-sofamesh-tag": "gray"}))
        await handler(call(headers={"x-sofamesh-tag": "blue"}))
    assert term.endpoints == [GRAY, STATIC] * 3


async def test_unknown_tag_falls_back_to_untagged_unless_forced() -> None:
    handler, term, _, _ = routed(TAGS, [GRAY, PLAIN, STATIC])
    await handler(call(headers={"x-sofamesh-tag": "red"}))
    assert term.endpoints == [PLAIN]  # neither the gray group nor a statically tagged one
    forced = await handler(call(headers={"x-sofamesh-tag": "red", "x-sofamesh-force-tag": "true"}))
    assert forced.status is Status.NO_ENDPOINT


async def test_untagged_request_avoids_tag_groups() -> None:
    handler, term, _, _ = routed(TAGS, [GRAY, PLAIN, STATIC])
    for _ in range(4):
        await handler(call())
    # Dubbo: statically tagged endpoints whose tag is not a group name still serve untagged calls.
    assert set(term.endpoints) == {PLAIN, STATIC}
