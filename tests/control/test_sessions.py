"""Sessions under bad input: garbage and floods cut off alone, invalid stored rules never pushed,
and shadow decisions summed from real reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.control.harness import (
    control_with_workspace,
    eventually,
    running_control,
    sidecar_config,
)

from sofamesh.control.planes import Planes
from sofamesh.control.records import Records
from sofamesh.control.sqlite_store import SqliteStore
from sofamesh.control.store import LastKnownStore
from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio

REPORTS = "/api/v1/workspaces/a/dataplanes"


async def test_garbage_and_floods_are_cut_off_alone(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch, max_reports_per_second=5.0) as (_cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        dp = admin.as_(await admin.token_for("a", "dataplane"))
        status, data = await dp.call("POST", REPORTS, {"id": 7, "mode": "vm", "traffic": "lots"})
        assert status == 400
        for part in ("id:", "app:", "mode:", "traffic:"):
            assert part in data["error"]
        statuses = [
            (await dp.call("POST", REPORTS, {"id": "flood", "app": "x"}))[0] for _ in range(30)
        ]
        assert statuses[0] == 200 and statuses.count(429) >= 20
        assert (await dp.call("POST", REPORTS, {"id": "flood", "app": "x"}))[0] == 429  # cut off
        # Another data plane of the same workspace is not affected.
        assert (await dp.call("POST", REPORTS, {"id": "calm", "app": "y"}))[0] == 200
        rows = await admin.ok("GET", "/api/v1/workspaces/a/sidecars")
        assert {r["id"] for r in rows} == {"flood", "calm"}


async def test_an_invalid_stored_document_is_never_pushed(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch) as (cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        dp = admin.as_(await admin.token_for("a", "dataplane"))
        await dp.ok("POST", REPORTS, {"id": "d1", "app": "x"})
        corrupt = {
            "version": "v1",
            "number": 1,
            "author": "?",
            "time": 0,
            "message": "",
            "shadow": False,
            "rollback_of": None,
            "document": {"colour": "red"},
        }
        await cp.records.put_json("rules/a/00000001", corrupt)
        await cp.records.put_json("rulehead/a", {"version": 1})
        cp.sessions.changed("a")
        watch = f"{REPORTS}/d1/watch?rules=&wait=0.3"
        assert await dp.ok("GET", watch) == {}
        await admin.ok("POST", "/api/v1/workspaces/a/rules", {"document": {}})
        found = await dp.ok("GET", watch)
        assert found["rules"]["version"] == "v2"


async def test_shadow_rules_count_what_they_would_do(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with control_with_workspace(tmp_path, monkeypatch) as (cp, admin, token):
        limit = {"rate_limits": [{"service": "orders-svc", "count": 1, "name": "one-per-s"}]}
        await admin.ok("POST", "/api/v1/workspaces/a/rules", {"document": limit, "shadow": True})
        async with Procs(tmp_path, anyio_backend) as procs:
            app = await procs.plain_app("a")
            cfg = sidecar_config(tmp_path, f"http://{cp.bound}", token, "orders", app["port"])
            ready = await procs.sidecar("orders", cfg)

            async def synced() -> bool:
                rows = await admin.ok("GET", "/api/v1/workspaces/a/sidecars")
                return bool(rows) and rows[0]["rules_version"] == "v1"

            await eventually(synced, what="v1 in force")
            async with httpx.AsyncClient(base_url=f"http://{ready['outbound[0]']}") as c:
                codes = [
                    (await c.get("/", headers={"host": "orders-svc"})).status_code
                    for _ in range(10)
                ]
            assert codes == [200] * 10  # shadow: nothing rejected

            async def shadowed() -> Any:
                rows = await admin.ok("GET", "/api/v1/workspaces/a/rules/decisions")
                row = next((r for r in rows if r["name"] == "one-per-s"), None)
                return row if row and row.get("shadowed", 0) >= 5 else None

            row = await eventually(shadowed, what="shadowed decisions reported")
            assert row["kind"] == "rate_limits" and row.get("rejected", 0) == 0


async def test_long_lost_data_planes_are_forgotten(tmp_path: Path) -> None:
    async with SqliteStore(str(tmp_path / "s.db")) as store:
        planes = Planes(Records(LastKnownStore(store)), forget_after=100.0)
        for name, seen in (("old", 1000.0), ("new", 1150.0)):
            planes.put(f"dataplanes/a/{name}", {"id": name, "last_seen": seen})
        await planes.flush()
        assert [r["id"] for r in await planes.list("a")] == ["new", "old"]
        assert await planes.forget_lost(now=1200.0) == 1
        assert [r["id"] for r in await planes.list("a")] == ["new"]
        assert await store.get("dataplanes/a/old") is None
