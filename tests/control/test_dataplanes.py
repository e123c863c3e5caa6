"""Real sidecar processes report in, receive rules, ack, persist them, obey operator actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.control.harness import eventually, running_control, sidecar_config

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio

LIMIT = {"rate_limits": [{"service": "orders-svc", "count": 1000, "name": "orders-qps"}]}


async def _row(admin: Any, app: str) -> dict[str, Any] | None:
    rows = await admin.ok("GET", "/api/v1/workspaces/a/sidecars")
    return next((r for r in rows if r["app"] == app), None)


async def test_a_sidecar_reports_syncs_persists_and_obeys(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SOFAMESH_INJECTED_AT", "1700000000")
    monkeypatch.setenv("POD_NAME", "orders-7d9f")
    monkeypatch.setenv("POD_NAMESPACE", "shop")
    async with running_control(tmp_path, monkeypatch, report_interval=0.2) as (cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        token = await admin.token_for("a", "dataplane")
        control = f"http://{cp.bound}"
        async with Procs(tmp_path, anyio_backend) as procs:
            app = await procs.plain_app("a")
            cfg = sidecar_config(tmp_path, control, token, "orders", app["port"])
            ready = await procs.sidecar("orders", cfg)
            row = await eventually(lambda: _row(admin, "orders"), what="the sidecar reported")
            assert row["mode"] == "sidecar" and row["status"] == "connected"
            assert row["sync"] == "SYNCED" and row["rules_version"] is None
            assert row["injected_at"] == "1700000000" and row["pod"] == "orders-7d9f"
            assert row["pod_namespace"] == "shop" and row["version"]
            assert row["provides"] == ["orders-svc"]

            await admin.ok(
                "POST", "/api/v1/workspaces/a/rules", {"document": LIMIT, "message": "m"}
            )

            async def synced() -> bool:
                r = await _row(admin, "orders")
                return r is not None and r["rules_version"] == "v1" and r["sync"] == "SYNCED"

            await eventually(synced, what="v1 acked")
            async with httpx.AsyncClient(base_url=f"http://{ready['admin']}") as side:
                dump = (await side.get("/config_dump")).json()
                assert dump["rules"]["version"] == "v1" and dump["rules"]["origin"] == "control:v1"
                dp_id = row["id"]
                await admin.ok(
                    "POST", f"/api/v1/workspaces/a/sidecars/{dp_id}/actions", {"action": "fail"}
                )

                async def failed() -> bool:
                    return (await side.get("/ready")).status_code == 503

                await eventually(failed, what="marked failed")
                await admin.ok(
                    "POST", f"/api/v1/workspaces/a/sidecars/{dp_id}/actions", {"action": "ok"}
                )

                async def serving() -> bool:
                    return (await side.get("/ready")).status_code == 200

                await eventually(serving, what="marked ok")
            audit = await admin.ok("GET", "/api/v1/workspaces/a/audit")
            assert [e["action"] for e in audit][-2:] == ["dataplane.fail", "dataplane.ok"]

            # Restarted while the control plane is down: the last good rules are in force.
            procs.stop("sidecar-orders")
            cp.stop()
            bad = f"http://127.0.0.1:{_free_port()}"
            ready = await procs.sidecar("orders2", {**cfg, "control": bad})
            async with httpx.AsyncClient(base_url=f"http://{ready['admin']}") as side:
                rules = (await side.get("/config_dump")).json()["rules"]
                assert rules["version"] == "v1" and rules["origin"] == "control-cache:v1"


async def test_nack_shows_rejected_and_silence_shows_lost(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with running_control(tmp_path, monkeypatch, report_interval=0.2, lost_after=1.0) as (
        cp,
        admin,
    ):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        token = await admin.token_for("a", "dataplane")
        await admin.ok("POST", "/api/v1/workspaces/a/rules", {"document": LIMIT})
        async with Procs(tmp_path, anyio_backend) as procs:
            app = await procs.plain_app("a")
            cfg = sidecar_config(tmp_path, f"http://{cp.bound}", token, "orders", app["port"])
            await procs.sidecar("orders", cfg)

            async def synced() -> dict[str, Any] | None:
                r = await _row(admin, "orders")
                return r if r and r["sync"] == "SYNCED" and r["rules_version"] == "v1" else None

            row = await eventually(synced, what="v1 acked")
            await admin.ok("POST", "/api/v1/workspaces/a/rules", {"document": {}})
            # A data plane's nack (as one running another parser version would send it).
            dp = admin.as_(token)
            await dp.ok(
                "POST",
                f"/api/v1/workspaces/a/dataplanes/{row['id']}/ack",
                {"version": "v2", "error": "rules rejected: unknown key"},
            )
            rows = await admin.ok("GET", "/api/v1/workspaces/a/sidecars")
            if rows[0]["rules_version"] != "v2":  # the real sidecar may have acked v2 first
                assert rows[0]["sync"] == "REJECTED"
                assert "unknown key" in rows[0]["sync_error"]
            procs.kill("sidecar-orders")

            async def lost() -> bool:
                r = await _row(admin, "orders")
                return r is not None and r["status"] == "lost"

            await eventually(lost, what="lost after silence")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
