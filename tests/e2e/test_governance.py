"""Governance end to end: rules enforced by real sidecars and by the SDK, and changed live.

Provider: a plain HTTP app behind sidecar "orders" (inbound rules). Consumers:
sidecars "shop" and "intruder" (outbound rules) with plain HTTP clients, and
the SDK in this process. Rules come from each sidecar's watched rules file,
rewritten by the plugin's `set_rules`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import httpx
import pytest

from sofamesh.testing import (
    MeshFactory,
    ProviderFactory,
    RulesRejected,
    SidecarFactory,
    SidecarProcess,
)

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
APP = "tests.testing.apps:orders"

INBOUND_RULES = {
    "version": "in-1",
    "auth": {
        "inbound": {"rules": [{"name": "orders-callers", "service": ORDERS, "allow": ["shop"]}]}
    },
    "rate_limits": [
        {"name": "export-qps", "service": ORDERS, "method": "/export", "count": 3},
    ],
}
OUTBOUND_RULES = {
    "version": "out-1",
    "routes": [
        {
            "name": "maintenance",
            "service": "com.example.Legacy",
            "direct_response": {"code": 503, "body": "back at 14:00"},
        }
    ],
    "faults": [
        {"name": "chaos", "service": ORDERS, "headers": {"x-chaos": None}, "abort": {"code": 503}},
    ],
}


@asynccontextmanager
async def mesh(
    sidecar: SidecarFactory, provider: ProviderFactory
) -> AsyncIterator[dict[str, SidecarProcess]]:
    async with provider("sidecar", APP, [ORDERS], app="orders", rules=INBOUND_RULES) as orders:
        assert orders.sidecar is not None
        out = [{"protocol": "http"}]
        shop = await sidecar("shop", outbound=out, rules=OUTBOUND_RULES)
        intruder = await sidecar("intruder", outbound=out)
        yield {"provider": orders.sidecar, "shop": shop, "intruder": intruder}


def via(sidecar: SidecarProcess) -> str:
    return sidecar.outbound_url("http")


async def test_rules_enforced_through_sidecars(
    sofamesh_sidecar: SidecarFactory, sofamesh_provider: ProviderFactory
) -> None:
    async with mesh(sofamesh_sidecar, sofamesh_provider) as m, httpx.AsyncClient() as c:
        h = {"host": ORDERS}
        ok = await c.get(f"{via(m['shop'])}/orders/1", headers=h)
        assert ok.status_code == 200 and ok.json()["caller"] == "shop"
        # auth: the provider's sidecar only lets "shop" in
        denied = await c.get(f"{via(m['intruder'])}/orders/1", headers=h)
        assert denied.status_code == 403 and "orders-callers" in denied.text
        # inbound rate limit: 3 per second on /export
        codes = [(await c.get(f"{via(m['shop'])}/export", headers=h)).status_code for _ in range(8)]
        assert codes.count(200) <= 4 and 429 in codes
        limited = next(
            r for r in [await c.get(f"{via(m['shop'])}/export", headers=h)] if r.status_code == 429
        )
        assert "export-qps" in limited.text
        # outbound fault, only for requests that ask for chaos
        chaos = await c.get(f"{via(m['shop'])}/orders/1", headers={**h, "x-chaos": "1"})
        assert chaos.status_code == 503
        # direct response: nobody needs to serve com.example.Legacy
        legacy = await c.get(f"{via(m['shop'])}/x", headers={"host": "com.example.Legacy"})
        assert legacy.status_code == 503 and legacy.text == "back at 14:00"
        # every decision is visible in the admin API
        stats = (await m["provider"].admin("GET", "/stats/prometheus")).text
        assert "export-qps" in stats and "orders-callers" in stats


async def test_hot_reload_applies_and_rejects_bad_documents(
    sofamesh_sidecar: SidecarFactory, sofamesh_provider: ProviderFactory
) -> None:
    async with mesh(sofamesh_sidecar, sofamesh_provider) as m, httpx.AsyncClient() as c:
        h = {"host": ORDERS}
        provider = m["provider"]
        assert (await c.get(f"{via(m['shop'])}/orders/1", headers=h)).status_code == 200
        closed = {**INBOUND_RULES, "version": "in-2"}
        closed["auth"] = {
            "inbound": {"rules": [{"name": "lockdown", "service": ORDERS, "deny": ["shop"]}]}
        }
        await provider.set_rules(closed)  # returns once the sidecar has read the file
        assert (await c.get(f"{via(m['shop'])}/orders/1", headers=h)).status_code == 403
        rules = await provider.rules_status()
        assert rules["version"] == "in-2" and rules["last_error"] is None
        with pytest.raises(RulesRejected):
            await provider.set_rules({"rate_limits": [{"service": ORDERS}]})  # no count
        rules = await provider.rules_status()
        assert rules["version"] == "in-2" and "rate_limits[0].count" in rules["last_error"]
        # the last good rules stay in force
        assert (await c.get(f"{via(m['shop'])}/orders/1", headers=h)).status_code == 403


async def test_reload_under_load_loses_no_call_both_rule_sets_allow(
    sofamesh_sidecar: SidecarFactory, sofamesh_provider: ProviderFactory
) -> None:
    async with mesh(sofamesh_sidecar, sofamesh_provider) as m, httpx.AsyncClient() as c:
        h = {"host": ORDERS}
        failures: list[int] = []
        done = 0
        stop = anyio.Event()

        async def load() -> None:
            nonlocal done
            while not stop.is_set():
                r = await c.get(f"{via(m['shop'])}/orders/1", headers=h)
                done += 1
                if r.status_code != 200:
                    failures.append(r.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(load)
            for i in range(6):  # six changes, each allowing /orders for shop
                rules = {**INBOUND_RULES, "version": f"in-load-{i}"}
                rules["rate_limits"] = [{"service": ORDERS, "method": "/export", "count": 3 + i}]
                await m["provider"].set_rules(rules)
                assert (await m["provider"].rules_status())["version"] == f"in-load-{i}"
            stop.set()
        assert done > 50 and failures == []


async def test_sdk_applies_the_same_rules(
    sofamesh_mesh: MeshFactory, sofamesh_provider: ProviderFactory
) -> None:
    rules = {
        "rate_limits": [
            {"name": "sdk-out", "service": ORDERS, "direction": "outbound", "count": 2}
        ],
        "fallbacks": [{"name": "cached", "service": ORDERS, "method": "/cached"}],
    }
    async with (
        sofamesh_provider("sdk-process", APP, [ORDERS], app="p1"),
        sofamesh_mesh("shop", rules=rules) as m,
    ):
        m.governance.set_fallback(ORDERS, lambda inv, result: b"from the cache", method="/cached")
        async with httpx.AsyncClient(transport=m.httpx_transport()) as c:
            codes = [(await c.get(f"http://{ORDERS}/orders/1")).status_code for _ in range(6)]
            assert codes[:2] == [200, 200] and 429 in codes
            r = await c.get(f"http://{ORDERS}/cached")
            assert r.status_code == 200 and r.content == b"from the cache"
            assert r.headers["x-sofamesh-fallback"] == "cached"


ROUTING_RULES = {
    "routes": [
        {
            "name": "beta",
            "service": ORDERS,
            "match": {"headers": [{"name": "x-beta", "present": True}]},
            "split": [{"subset": {"version": "v2"}}],
        },
        {
            "name": "stable",
            "service": ORDERS,
            "split": [{"subset": {"version": "v1"}, "weight": 100}],
            "retry": {"attempts": 3, "retry_on": ["app_error"]},
        },
    ],
    "hot_params": [
        {
            "name": "per-user",
            "service": ORDERS,
            "direction": "outbound",
            "header": "x-user",
            "count": 2,
        },
    ],
    "breakers": [
        {
            "name": "fail-breaker",
            "service": ORDERS,
            "method": "/fail-hard",
            "strategy": "error_count",
            "threshold": 3,
            "min_request_count": 3,
            "recovery_timeout": 30,
        },
    ],
    "load_balancing": [{"service": ORDERS, "hash": {"header": "x-session"}}],
}


async def test_routing_hashing_hot_params_and_breakers_in_real_processes(
    sofamesh_mesh: MeshFactory, sofamesh_provider: ProviderFactory
) -> None:
    """Header and version-subset routes, consistent hashing, hot parameters, a breaker and a retry
    policy, through the SDK, against two v1 and one v2 SDK providers in processes of their own."""
    async with AsyncExitStack() as stack:
        names: dict[int, str] = {}
        for name, version in (("a1", "v1"), ("a2", "v1"), ("b1", "v2")):
            p = await stack.enter_async_context(
                sofamesh_provider("sdk-process", APP, [ORDERS], app=name, version=version)
            )
            names[p.processes[0].pid] = name
        m = await stack.enter_async_context(sofamesh_mesh("shop", rules=ROUTING_RULES))
        c = await stack.enter_async_context(httpx.AsyncClient(transport=m.httpx_transport()))
        url = f"http://{ORDERS}"

        async def who(path: str = "/o", **headers: str) -> str:
            r = await c.get(url + path, headers=headers)
            assert r.status_code == 200, r.text
            return names[r.json()["pid"]]

        with anyio.fail_after(10):  # until discovery has all three
            seen: set[str] = set()
            while seen != {"a1", "a2"}:
                seen.add(await who())
        assert {await who(**{"x-beta": "1"}) for _ in range(6)} == {"b1"}  # header route
        assert {await who(**{"x-session": "s-42"}) for _ in range(6)} in ({"a1"}, {"a2"})
        # hot parameter: two calls per second per user
        codes = [(await c.get(url + "/o", headers={"x-user": "u1"})).status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and 429 in codes
        assert (await c.get(url + "/o", headers={"x-user": "u2"})).status_code == 200
        # retry policy: a 500 is retried on the other v1 instance, which fails too
        r = await c.get(url + "/fail")
        assert r.status_code == 500
        # breaker: once provider errors reach the threshold, calls stop leaving
        codes = []
        while len(codes) < 8 and (r := await c.get(url + "/fail-hard")).status_code == 500:
            codes.append(r.status_code)
        assert 3 <= len(codes) <= 4  # Sentinel's error count: opens at the threshold
        assert r.status_code == 503 and r.headers["x-sofamesh-error"] == "circuit_open"
        assert "fail-breaker" in r.text
        breakers = m.governance.breaker_states()[ORDERS]
        assert breakers[0]["state"] == "open"
