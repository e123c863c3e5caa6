"""The in-memory harness: the real chains and governance, no processes, no sockets."""

from __future__ import annotations

import time

import anyio
import pytest
from tests.testing.apps import orders

from sofamesh.testing import assert_reached, calls_to, mesh_for

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"


async def test_a_call_goes_through_both_chains_in_milliseconds() -> None:
    started = time.perf_counter()
    async with mesh_for(orders, [ORDERS], consumer_app="shop") as h, h.client() as c:
        r = await c.get("/orders/1")
        assert r.status_code == 200 and r.json() == {
            "pid": r.json()["pid"],
            "path": "/orders/1",
            "caller": "shop",  # the caller's identity crossed the hop
        }
        await assert_reached(h.consumer, ORDERS, 1)
        assert h.providers[0].stats.service("inbound", ORDERS, "shop").total == 1
    assert time.perf_counter() - started < 1.0


async def test_an_outbound_rate_limit_and_a_fault() -> None:
    limit = {
        "rate_limits": [{"name": "qps", "service": ORDERS, "direction": "outbound", "count": 2}]
    }
    async with mesh_for(orders, [ORDERS], rules=limit) as h, h.client() as c:
        codes = [(await c.get("/")).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]
        assert "qps" in (await c.get("/")).text
        h.set_rules({"faults": [{"service": ORDERS, "method": "/x", "abort": {"code": 503}}]})
        assert (await c.get("/x")).status_code == 503
        assert (await c.get("/y")).status_code == 200
        assert await calls_to(h.consumer, ORDERS, status="rate_limited") == 3


async def test_inbound_auth_on_the_provider_sees_the_callers_app() -> None:
    auth = {
        "auth": {
            "inbound": {"rules": [{"name": "only-shop", "service": ORDERS, "allow": ["shop"]}]}
        }
    }
    async with mesh_for(orders, [ORDERS], consumer_app="intruder", provider_rules=auth) as h:
        async with h.client() as c:
            denied = await c.get("/orders/1")
        assert denied.status_code == 403 and "only-shop" in denied.text
    async with (
        mesh_for(orders, [ORDERS], consumer_app="shop", provider_rules=auth) as h,
        h.client() as c,
    ):
        assert (await c.get("/orders/1")).status_code == 200


async def test_balancing_retries_and_a_provider_deadline() -> None:
    async with mesh_for(orders, [ORDERS], instances=2) as h, h.client() as c:
        for _ in range(4):
            assert (await c.get("/")).status_code == 200
        totals = [rt.stats.service("inbound", ORDERS, "consumer").total for rt in h.providers]
        assert totals == [2, 2]
        # An inbound delay longer than the caller's timeout: the caller gets a 504.
        h.set_provider_rules(
            {"faults": [{"service": ORDERS, "direction": "inbound", "delay": {"fixed_delay": 5}}]}
        )
        with anyio.fail_after(2):
            r = await c.get("/", timeout=0.05)
        assert r.status_code == 504


async def test_a_service_with_no_provider_is_a_mesh_503() -> None:
    async with mesh_for(orders, [ORDERS]) as h, h.client(base_url="http://com.example.None") as c:
        with anyio.fail_after(5):
            r = await c.get("/", timeout=0.2)
        assert r.status_code in (503, 504) and r.headers["x-sofamesh-error"]
