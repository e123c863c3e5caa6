"""Made-up service names must not grow the metrics: stats are kept per service that exists.

A real sidecar process: an outbound listener asked for names nobody registered answers
each `no_endpoint` and counts them all under one row (`(unknown)` in sofamesh's families,
`destination_service="unknown"` in Istio's), while a registered service keeps its own; a
catch-all inbound listener's names share that row too; and `metrics.max_services` caps the
services counted apart, the rest sharing `_other`, with a warning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sofamesh.demo.procs import Procs
from sofamesh.stats import OTHER_SERVICES, UNKNOWN_SERVICES

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
MADE_UP = 120


def config(tmp: Path, app_port: int, **more: Any) -> dict[str, Any]:
    upstream = f"127.0.0.1:{app_port}"
    return {
        "app": "shop",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "metrics": {"istio": True, **more.pop("metrics", {})},
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "inbound": [
            {"protocol": "http", "listen": "127.0.0.1:0", "upstream": upstream,
             "services": more.pop("services", [ORDERS])},
            {"protocol": "http", "listen": "127.0.0.1:0", "upstream": upstream,
             "catch_all": True},
        ],
    }  # fmt: skip


async def call_all(url: str, headers: list[dict[str, str]]) -> list[int]:
    """One GET per header set, 4 at a time (the demo app is no server for bursts)."""
    codes: list[int] = []
    limiter = anyio.CapacityLimiter(4)
    async with httpx.AsyncClient(timeout=10) as c:

        async def one(h: dict[str, str]) -> None:
            async with limiter:
                codes.append((await c.get(url, headers=h)).status_code)

        async with anyio.create_task_group() as tg:
            for h in headers:
                tg.start_soon(one, h)
    return codes


async def scrape(admin: str) -> tuple[dict[str, Any], str]:
    async with httpx.AsyncClient() as c:
        stats = (await c.get(f"http://{admin}/stats")).json()
        return stats, (await c.get(f"http://{admin}/stats/prometheus")).text


def labels(text: str, family: str, label: str) -> set[str]:
    pattern = re.compile(rf'^{family}\{{.*?\b{label}="([^"]*)"', re.M)
    return set(pattern.findall(text))


async def test_made_up_outbound_names_share_one_row(tmp_path: Path, anyio_backend: str) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("orders-1")
        bound = await procs.sidecar("shop", config(tmp_path, app["port"]))
        out = f"http://{bound['outbound[0]']}/x"
        assert await call_all(out, [{"host": ORDERS}]) == [200]
        _, before = await scrape(bound["admin"])
        names = [{"host": f"made-up-{i}.example"} for i in range(MADE_UP)]
        with anyio.fail_after(30):
            codes = await call_all(out, names)
        assert codes == [503] * MADE_UP
        stats, text = await scrape(bound["admin"])
    outbound = {s["service"]: s for s in stats["services"] if s["direction"] == "outbound"}
    assert set(outbound) == {ORDERS, UNKNOWN_SERVICES}
    assert outbound[UNKNOWN_SERVICES]["rq_total"] == MADE_UP
    assert outbound[UNKNOWN_SERVICES]["rq_status"] == {"no_endpoint": MADE_UP}
    assert labels(text, "sofamesh_rq_total", "service") == {ORDERS, UNKNOWN_SERVICES}
    source = {s for s in labels(text, "istio_requests_total", "destination_service")}
    assert source == {ORDERS, "unknown"}
    # one row more in every family, whatever the number of names
    assert len(text.splitlines()) - len(before.splitlines()) < 100


async def test_catch_all_names_share_one_row_and_the_cap_is_a_key(
    tmp_path: Path, anyio_backend: str
) -> None:
    services = [f"com.example.S{i}" for i in range(6)]
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("orders-1")
        cfg = config(tmp_path, app["port"], services=services, metrics={"max_services": 3})
        bound = await procs.sidecar("shop", cfg)
        declared = f"http://{bound['inbound[0]']}/x"
        caught = f"http://{bound['inbound[1]']}/x"
        assert await call_all(declared, [{"x-sofamesh-service": s} for s in services]) == [200] * 6
        names = [{"x-sofamesh-service": f"made.up.{i}"} for i in range(MADE_UP)]
        with anyio.fail_after(30):
            assert await call_all(caught, names) == [200] * MADE_UP
        stats, text = await scrape(bound["admin"])
    inbound = [s for s in stats["services"] if s["direction"] == "inbound"]
    by_name = {s["service"]: s["rq_total"] for s in inbound}
    assert by_name.pop(UNKNOWN_SERVICES) == MADE_UP
    assert by_name.pop(OTHER_SERVICES) == 3
    assert len(by_name) == 3 and set(by_name) <= set(services)
    assert labels(text, "sofamesh_rq_total", "service") == {
        *by_name,
        OTHER_SERVICES,
        UNKNOWN_SERVICES,
    }
    assert "unknown" in labels(text, "istio_requests_total", "destination_service")
    assert stats["counters"]["stats.services_overflowed.inbound"] == 3
    assert "metrics.max_services" in (tmp_path / "sidecar-shop.log").read_text()
