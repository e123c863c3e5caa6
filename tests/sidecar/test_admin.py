"""The admin API's Envoy endpoints and its Prometheus output, on a sidecar in-process."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
from tests.sidecar.test_sidecar import JSON, base, sidecar, upstream_app

pytestmark = pytest.mark.anyio

ORDERS = {"host": "com.example.Orders"}
RULES = {
    "version": "r1",
    "rate_limits": [{"service": "com.example.Orders", "count": 1000, "direction": "outbound"}],
}


async def test_prometheus_output_parses_and_follows_the_naming_rules(tmp_path: Path) -> None:
    async with upstream_app() as up, sidecar(base(tmp_path, up, rules=RULES)) as sc:
        admin, out = f"http://{sc.bound['admin']}", f"http://{sc.bound['outbound[0]']}"
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{out}/orders/1", headers=ORDERS)).status_code == 200
            om = await c.get(
                f"{admin}/stats/prometheus",
                headers={"accept": "application/openmetrics-text; version=1.0.0"},
            )
            text = (await c.get(f"{admin}/stats/prometheus")).text
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics(om.text)}  # raises on anything invalid
    for f in families.values():
        assert f.documentation, f.name  # every family has its # HELP
        if f.type == "counter":
            assert all(s.name == f.name + "_total" for s in f.samples), f.name
        assert "_ms" not in f.name, f.name  # durations are in seconds
    duration = families["sofamesh_rq_duration_seconds"]
    assert duration.type == "histogram" and duration.unit == "seconds"
    (count,) = [
        s
        for s in duration.samples
        if s.name.endswith("_count") and s.labels["direction"] == "outbound"
    ]
    assert count.value == 1
    calls = [s for s in families["sofamesh_rq"].samples if s.labels["direction"] == "inbound"]
    assert [(s.labels["caller"], s.labels["response_code"], s.value) for s in calls] == [
        ("orders", "200", 1)
    ]
    assert "sofamesh_governance_rate_limits_passed" in families
    # the classic text format carries the same families, and parses too
    assert {f.name for f in classic(text)} == set(families)
    assert "# TYPE sofamesh_rq_total counter" in text and "# EOF" not in text


async def test_stats_filter_and_reset_counters(tmp_path: Path) -> None:
    async with upstream_app() as up, sidecar(base(tmp_path, up)) as sc:
        admin, out = f"http://{sc.bound['admin']}", f"http://{sc.bound['outbound[0]']}"
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{out}/orders/1", headers=ORDERS)).status_code == 200
            stats = (await c.get(f"{admin}/stats", params={"filter": "^inbound\\."})).json()
            assert {s["direction"] for s in stats["services"]} == {"inbound"}
            assert stats["endpoints"] == []
            prom = (await c.get(f"{admin}/stats/prometheus?filter=endpoint")).text
            assert "sofamesh_endpoint_rq_total{" in prom and "sofamesh_rq_total{" not in prom
            bad = await c.get(f"{admin}/stats", params={"filter": "("})
            assert bad.status_code == 400 and "regular expression" in bad.json()["error"]
            assert (await c.post(f"{admin}/reset_counters", headers=JSON)).text == "OK\n"
            assert (await c.get(f"{admin}/reset_counters")).status_code == 405
            after = (await c.get(f"{admin}/stats")).json()
    assert {s["rq_total"] for s in after["services"]} == {0}
    assert {e["rq_total"] for e in after["endpoints"]} == {0}


async def test_server_info_and_listeners(tmp_path: Path) -> None:
    async with upstream_app() as up, sidecar(base(tmp_path, up)) as sc:
        admin = f"http://{sc.bound['admin']}"
        async with httpx.AsyncClient() as c:
            info = (await c.get(f"{admin}/server_info")).json()
            text = (await c.get(f"{admin}/listeners")).text
            listed = (await c.get(f"{admin}/listeners?format=json")).json()
    assert info["state"] == "LIVE" and info["node"]["id"] == "orders"
    assert info["version"] == __import__("sofamesh").__version__
    assert info["uptime_current_epoch"].endswith("s")
    inbound, outbound = sc.bound["inbound[0]"], sc.bound["outbound[0]"]
    assert text == f"inbound[0]::{inbound}\noutbound[0]::{outbound}\n"
    assert listed["listener_statuses"] == [
        {
            "name": name,
            "direction": name.split("[")[0],
            "protocol": "http",
            "local_address": {"socket_address": {"address": a.host, "port_value": a.port}},
        }
        for name, a in (("inbound[0]", inbound), ("outbound[0]", outbound))
    ]


async def test_logging_changes_levels_live_and_rejects_unknown_ones(tmp_path: Path) -> None:
    root, admin_log = logging.getLogger(), logging.getLogger("sofamesh.admin")
    loggers = [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)]
    saved = {lg: lg.level for lg in (root, admin_log, *loggers)}  # the endpoint sets them all
    try:
        async with sidecar(base(tmp_path)) as sc:
            admin = f"http://{sc.bound['admin']}"
            async with httpx.AsyncClient() as c:
                bad = await c.post(f"{admin}/logging?level=foo", headers=JSON)
                assert bad.status_code == 400 and "unknown log level 'foo'" in bad.text
                assert "info, warning" in bad.text  # names the valid ones
                assert (await c.get(f"{admin}/logging?level=debug")).status_code == 405
                r = await c.post(f"{admin}/logging?level=warn", headers=JSON)
                assert r.status_code == 200 and "  sofamesh.admin: warning" in r.text
                assert root.level == admin_log.level == logging.WARNING
                r = await c.post(f"{admin}/logging?sofamesh.admin=DEBUG", headers=JSON)
                assert "  sofamesh.admin: debug" in r.text and root.level == logging.WARNING
    finally:
        for lg, level in saved.items():
            lg.setLevel(level)
