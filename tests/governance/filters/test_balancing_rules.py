"""load_balancing rules through RouteFilter + BalanceFilter: hashing, zones, slow start."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from govhelp import Clusters, Terminal, call, chain, endpoints, governance

from sofamesh.clock import FakeClock
from sofamesh.endpoint import Endpoint
from sofamesh.governance.filters.route import RouteFilter
from sofamesh.upstream.balance import BalanceFilter

pytestmark = pytest.mark.anyio


def balanced(
    lb: dict[str, Any],
    eps: list[Endpoint],
    *,
    clock: FakeClock | None = None,
    local_zone: str = "",
    routes: list[dict[str, Any]] | None = None,
) -> Any:
    clock = clock or FakeClock()
    g = governance(
        {"load_balancing": [{"service": "orders", **lb}], "routes": routes or []},
        clock,
        local_zone=local_zone,
    )
    term = Terminal()
    clusters = Clusters(clock, orders=eps)
    handler = chain([RouteFilter(g, clock), BalanceFilter(clusters, clock)], term)  # type: ignore[arg-type]
    return handler, term, g, clusters


@pytest.mark.parametrize("algorithm", ["ring_hash", "maglev"])
async def test_same_key_same_endpoint_and_keys_spread(algorithm: str) -> None:
    lb = {"hash": {"header": "x-user", "algorithm": algorithm, "table_size": 1009}}
    handler, term, g, _ = balanced(lb, endpoints(n=4))
    for user in range(200):
        for _ in range(2):
            await handler(call(headers={"x-user": str(user)}))
    pairs = list(zip(term.endpoints[::2], term.endpoints[1::2], strict=True))
    assert all(a == b for a, b in pairs)
    spread = Counter(a for a, _ in pairs)
    assert len(spread) == 4 and min(spread.values()) > 20
    assert g.snapshot()["rules"]["load_balancing"][0]["table_builds"] == 1


async def test_a_retry_of_a_hashed_call_goes_elsewhere() -> None:
    handler, term, _, _ = balanced({"hash": {"header": "x-user"}}, endpoints(n=3))
    inv = call(headers={"x-user": "42"})
    await handler(inv)
    inv.attempt += 1
    await handler(inv)
    assert term.endpoints[0] != term.endpoints[1]


async def test_without_the_header_the_balancer_picks() -> None:
    handler, term, _, _ = balanced({"hash": {"header": "x-user"}}, endpoints(n=3))
    for _ in range(3):
        await handler(call())
    assert len(set(term.endpoints)) == 3  # round robin


async def test_hashing_applies_within_a_route_subset() -> None:
    eps = endpoints(n=4, version=lambda i: "v2" if i >= 2 else "v1")
    routes = [{"service": "orders", "split": [{"subset": {"version": "v2"}}]}]
    handler, term, _, _ = balanced({"hash": {"header": "x-user"}}, eps, routes=routes)
    for user in range(50):
        await handler(call(headers={"x-user": str(user)}))
    assert {e.version for e in term.endpoints if e} == {"v2"}


async def test_zone_aware_keeps_calls_in_the_local_zone() -> None:
    eps = endpoints(n=6, zone=lambda i: "z1" if i < 3 else "z2")
    handler, term, _, _ = balanced({"zone_aware": {}}, eps, local_zone="z1")
    for _ in range(30):
        await handler(call())
    assert {e.zone for e in term.endpoints if e} == {"z1"}


async def test_zone_aware_spills_over_when_the_local_zone_is_short() -> None:
    clock = FakeClock()
    eps = endpoints(n=6, zone=lambda i: "z1" if i < 3 else "z2")
    handler, term, _, clusters = balanced({"zone_aware": {}}, eps, clock=clock, local_zone="z1")
    await handler(call())
    outlier = clusters.get("orders").outlier
    for _ in range(5):
        outlier.record(eps[0].key, True, clock.now())  # one of three local endpoints ejected
    for _ in range(1000):
        await handler(call())
    zones = Counter(e.zone for e in term.endpoints[1:] if e)
    # Local share of healthy endpoints 2/5 against 1/2 of callers: 80% stay, 20% spill.
    assert 0.74 < zones["z1"] / 1000 < 0.86


async def test_slow_start_ramps_a_new_endpoint_in() -> None:
    clock = FakeClock()
    old = endpoints(n=1)
    new = Endpoint("orders", "10.0.0.9", 9000)
    lb = {"slow_start": {"window": 100.0, "min_weight_percent": 10.0}}
    handler, term, _, clusters = balanced(lb, [*old, new], clock=clock)
    await handler(call())  # both start now: no difference yet
    cluster = clusters.get("orders")
    clock.advance(200)
    cluster.update(frozenset(old))
    await handler(call())
    cluster.update(frozenset([*old, new]))  # `new` comes back: it starts slow
    term.endpoints.clear()
    for _ in range(2000):
        await handler(call())
    early = Counter(term.endpoints)[new] / 2000
    clock.advance(50)
    term.endpoints.clear()
    for _ in range(2000):
        await handler(call())
    later = Counter(term.endpoints)[new] / 2000
    clock.advance(60)
    term.endpoints.clear()
    for _ in range(100):
        await handler(call())
    done = Counter(term.endpoints)[new] / 100
    assert early < 0.12  # 10% of its weight: about 1/11 of calls
    assert 0.28 < later < 0.38  # half its weight: about 1/3
    assert done == 0.5  # window over: round robin again
