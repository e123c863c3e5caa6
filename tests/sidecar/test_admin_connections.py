"""`/stats` counts connections per listener (downstream) and per upstream endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families as classic
from tests.sidecar.test_sidecar import base, sidecar, upstream_app

from sofamesh.testing.process import poll_until

pytestmark = pytest.mark.anyio
ORDERS = {"host": "com.example.Orders"}


async def test_listener_and_upstream_connections_are_counted(tmp_path: Path) -> None:
    async with upstream_app() as up, sidecar(base(tmp_path, up)) as sc:
        admin, out = f"http://{sc.bound['admin']}", f"http://{sc.bound['outbound[0]']}"
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{out}/orders/1", headers=ORDERS)).status_code == 200
            stats = (await c.get(f"{admin}/stats")).json()
            prom = (await c.get(f"{admin}/stats/prometheus")).text
    listeners = {row["name"]: row for row in stats["listeners"]}
    assert set(listeners) == {"outbound[0]", "inbound[0]"}
    for name in listeners:
        assert listeners[name]["downstream_cx_total"] == 1, listeners
        assert listeners[name]["downstream_cx_overflow"] == 0
    assert listeners["outbound[0]"]["downstream_cx_active"] == 1  # the client's, kept alive
    # The outbound hop's pool to the inbound listener, and the inbound's to the app.
    inbound, app = str(sc.bound["inbound[0]"]), f"127.0.0.1:{up}"
    cx = {
        u["address"]: (u["protocol"], u["upstream_cx_active"])
        for u in stats["upstream_connections"]
    }
    assert cx == {inbound: ("http", 1), app: ("http", 1)}
    families = {f.name: f for f in classic(prom)}
    total = families["sofamesh_listener_downstream_cx"]  # the parser drops `_total`
    assert {s.labels["listener"]: s.value for s in total.samples if s.name.endswith("_total")} == {
        "outbound[0]": 1, "inbound[0]": 1}  # fmt: skip
    active = families["sofamesh_upstream_cx_active"].samples
    assert sorted((s.labels["address"], s.value) for s in active) == sorted(
        [(inbound, 1.0), (app, 1.0)]
    )


async def test_evicted_and_refused_connections_are_counted_per_listener(tmp_path: Path) -> None:
    cfg = base(tmp_path)
    cfg["outbound"][0]["limits"] = {"max_connections_per_source": 1}
    async with sidecar(cfg) as sc, httpx.AsyncClient() as admin:
        out = sc.bound["outbound[0]"]

        def row_is(**want: int) -> Any:
            async def check() -> bool:
                rows = (await admin.get(f"http://{sc.bound['admin']}/stats")).json()["listeners"]
                row = {r["name"]: r for r in rows}["outbound[0]"]
                return all(row[k] == v for k, v in want.items())

            return check

        # At its share, a source's connection that never carried a request makes room.
        idle = await anyio.connect_tcp(out.host, out.port)
        async with idle, await anyio.connect_tcp(out.host, out.port):
            await poll_until(row_is(downstream_cx_evicted=1, downstream_cx_active=1), 5)
        await poll_until(row_is(downstream_cx_active=0), 5)
        # One that carried a request is kept: the new connection is refused instead.
        async with httpx.AsyncClient() as used:
            await used.get(f"http://{out}/orders/1", headers=ORDERS)
            async with await anyio.connect_tcp(out.host, out.port):
                await poll_until(row_is(downstream_cx_overflow=1, downstream_cx_total=3), 5)
