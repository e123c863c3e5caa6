"""The routes the console uses beyond the rest of the API: samples, per-data-plane
decisions, and the dry run of a rules document."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.control.harness import ADMIN_PASSWORD, running_control

pytestmark = pytest.mark.anyio

WS = "/api/v1/workspaces/a"


def report(dp: str, requests: int, shadowed: int) -> dict[str, Any]:
    return {
        "id": dp,
        "app": dp.split("-")[0],
        "provides": ["orders-svc"],
        "traffic": [
            {"direction": "inbound", "service": "orders-svc", "requests": requests, "errors": 0}
        ],
        "decisions": [{"kind": "rate_limits", "name": "orders-qps", "shadowed": shadowed}],
    }


async def test_samples_and_decisions_per_data_plane(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with running_control(tmp_path, monkeypatch, max_reports_per_second=1000) as (_cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        dp = admin.as_(await admin.token_for("a", "dataplane"))
        for n, (requests, shadowed) in enumerate([(100, 0), (150, 7)]):
            for name in ("orders-1", "orders-2"):
                await dp.ok("POST", f"{WS}/dataplanes", report(name, requests, shadowed + n))
        samples = await admin.ok("GET", f"{WS}/services/orders-svc/samples")
        assert samples["service"] == "orders-svc" and samples["bucket"] == 5.0
        [sample] = samples["samples"]
        assert sample["success_rate"] == 1.0 and sample["rps"] > 0
        assert abs(sample["time"] - time.time()) < 10
        assert (await admin.ok("GET", f"{WS}/services/other/samples"))["samples"] == []

        rows = await admin.ok("GET", f"{WS}/rules/decisions/dataplanes")
        assert [(r["dataplane"], r["app"], r["shadowed"]) for r in rows] == [
            ("orders-1", "orders", 8),
            ("orders-2", "orders", 8),
        ]


async def test_preview_names_problems_and_diffs_against_the_latest(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with running_control(tmp_path, monkeypatch) as (_cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        empty = await admin.ok("POST", f"{WS}/rules/preview", {"document": {}})
        assert empty == {
            "valid": True,
            "problems": [],
            "document": {},
            "yaml": "",
            "base": None,
            "diff": "",
        }
        limit = {"rate_limits": [{"service": "orders-svc", "count": 5}]}
        await admin.ok("POST", f"{WS}/rules", {"document": limit, "message": "m"})
        draft = "rate_limits:\n- service: orders-svc\n  count: 9\n  colour: red\n"
        out = await admin.ok("POST", f"{WS}/rules/preview", {"document": draft})
        assert not out["valid"] and out["base"] == "v1"
        assert any(p.startswith("rate_limits[0].colour: unknown key") for p in out["problems"])
        assert "-- count: 5\n" in out["diff"] and "+  count: 9\n" in out["diff"]
        assert (await admin.ok("GET", f"{WS}/rules/history"))[-1][
            "version"
        ] == "v1"  # stored nothing
        status, body = await admin.call("POST", f"{WS}/rules/preview", {"document": "a: [1"})
        assert status == 400 and "malformed YAML" in body["error"]

        # A viewer may look; a caller from elsewhere learns nothing.
        await admin.ok("POST", "/api/v1/workspaces", {"name": "b"})
        viewer = admin.as_(await admin.token_for("a", "viewer"))
        assert (await viewer.ok("POST", f"{WS}/rules/preview", {"document": limit}))["valid"]
        other = admin.as_(await admin.token_for("b", "viewer"))
        for method, path in [
            ("POST", f"{WS}/rules/preview"),
            ("GET", f"{WS}/rules/decisions/dataplanes"),
            ("GET", f"{WS}/services/orders-svc/samples"),
        ]:
            status, _ = await other.call(method, path, {"document": {}})
            assert status == 404


async def test_logout_revokes_the_callers_own_token_at_once(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with running_control(tmp_path, monkeypatch) as (_cp, admin):
        login = await admin.as_(None).ok(
            "POST", "/api/v1/login", {"user": "admin", "password": ADMIN_PASSWORD}
        )
        mine = admin.as_(login["token"])
        assert (await mine.ok("GET", "/api/v1/whoami"))["user"] == "admin"
        token_id = (await mine.ok("GET", "/api/v1/whoami"))["token_id"]
        assert await mine.ok("POST", "/api/v1/logout") == {"revoked": token_id}
        status, _ = await mine.call("GET", "/api/v1/whoami")
        assert status == 401
        assert (await admin.ok("GET", "/api/v1/whoami"))["user"] == "admin"  # others stay
        assert (await admin.as_(None).call("POST", "/api/v1/logout"))[0] == 401
