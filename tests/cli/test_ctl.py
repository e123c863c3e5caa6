"""`sofamesh ctl` as operators and scripts run it: stable JSON, exit statuses 0/1/2/3."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.control.harness import (
    ADMIN_PASSWORD,
    control_with_workspace,
    eventually,
    running_control,
    sidecar_config,
)

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio


class Ctl:
    def __init__(self, server: str, token: str | None = None) -> None:
        self.server = server
        self.token = token

    async def __call__(self, *args: str, stdin: str = "", token: str | None = None) -> Any:
        argv = [sys.executable, "-m", "sofamesh.cli", "ctl", "--server", self.server]
        if token or self.token:
            argv += ["--token", token or self.token or ""]
        proc = await anyio.run_process([*argv, *args], input=stdin.encode(), check=False)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    async def json(self, *args: str) -> Any:
        code, out, err = await self("-o", "json", *args)
        assert code == 0, err
        return json.loads(out)


async def test_login_workspaces_users_tokens_and_exit_statuses(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with running_control(tmp_path, monkeypatch) as (cp, _admin):
        anon = Ctl(f"http://{cp.bound}")
        code, _out, err = await anon("login", "-u", "admin", stdin="wrong\n")
        assert code == 3 and "wrong user or password" in err
        code, token, _err = await anon("login", "-u", "admin", stdin=ADMIN_PASSWORD + "\n")
        assert code == 0 and token.strip().startswith("smt_")
        ctl = Ctl(anon.server, token.strip())
        assert (await anon("workspaces", "list"))[0] == 3  # no token
        created = await ctl.json("workspaces", "create", "a")
        assert created["name"] == "a"
        assert [w["name"] for w in await ctl.json("workspaces", "list")] == ["a"]
        code, out, _ = await ctl("workspaces", "list")
        assert out.splitlines()[0].split() == ["NAME", "CREATED", "BY"]
        bob = await ctl.json("users", "create", "bob", "--role", "viewer", "-w", "a")
        assert bob["role"] == "viewer" and bob["password"]
        code, viewer, _ = await anon("login", "-u", "bob", f"--password={bob['password']}")
        assert code == 0
        code, _out, err = await ctl("rules", "apply", "-w", "a", "-f", "-", token=viewer.strip())
        assert code == 3 and "viewer" in err
        code, dp_token, _ = await ctl("tokens", "create", "-w", "a", "--role", "dataplane")
        assert code == 0 and dp_token.strip().startswith("smt_")
        assert (await ctl("services", "-w", "nowhere"))[0] == 1  # unknown workspace: 404
        assert (await ctl("workspaces", "create", "Bad Name"))[0] == 2
        unreachable = Ctl("http://127.0.0.1:9", token.strip())
        code, _out, err = await unreachable("workspaces", "list")
        assert code == 1 and "cannot reach" in err


async def test_rules_apply_history_diff_rollback(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch) as (cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        ctl = Ctl(f"http://{cp.bound}", admin.token)
        bad = tmp_path / "bad.yaml"
        bad.write_text("rate_limits:\n  - {service: orders, count: 10, colour: red}\nfaults: 3\n")
        code, _out, err = await ctl("rules", "apply", "-w", "a", "-f", str(bad))
        assert code == 2 and "nothing stored" in err
        assert "  - rate_limits[0].colour" in err and "  - faults" in err
        assert (await ctl("rules", "apply", "-w", "a", "-f", str(tmp_path / "none")))[0] == 2
        good = tmp_path / "rules.yaml"
        for count, message in ((10, "first"), (20, "second")):
            good.write_text(f"rate_limits:\n  - {{service: orders, count: {count}}}\n")
            applied = await ctl.json("rules", "apply", "-w", "a", "-f", str(good), "-m", message)
            assert applied["message"] == message
        history = await ctl.json("rules", "history", "-w", "a")
        assert [sorted(h) for h in history] == [
            ["author", "message", "rollback_of", "shadow", "time", "version"]
        ] * 2
        assert [(h["version"], h["author"], h["message"]) for h in history] == [
            ("v1", "admin", "first"),
            ("v2", "admin", "second"),
        ]
        code, out, _ = await ctl("rules", "diff", "v1", "v2", "-w", "a")
        assert code == 0 and "-- count: 10" in out and "+- count: 20" in out
        assert (await ctl.json("rules", "rollback", "v1", "-w", "a"))["version"] == "v3"
        code, out, _ = await ctl("rules", "get", "-w", "a")
        assert code == 0 and "count: 10" in out and out.startswith("# v3 by admin")
        assert (await ctl("rules", "diff", "v1", "-w", "a"))[0] == 2


async def test_services_sidecars_and_top_json(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with control_with_workspace(tmp_path, monkeypatch) as (cp, admin, token):
        ctl = Ctl(f"http://{cp.bound}", admin.token)
        async with Procs(tmp_path, anyio_backend) as procs:
            app = await procs.plain_app("a")
            cfg = sidecar_config(tmp_path, f"http://{cp.bound}", token, "orders", app["port"])
            await procs.sidecar("orders", cfg)

            async def listed() -> Any:
                services = await ctl.json("services", "-w", "a")
                return services if services and services[0]["providers"] else None

            services = await eventually(listed, what="orders-svc with its provider")
            svc = services[0]
            assert svc["name"] == "orders-svc"
            assert {"address", "app", "protocol"} <= set(svc["providers"][0])
            assert svc["providers"][0]["app"] == "orders" and svc["consumers"] == []
            (row,) = await ctl.json("sidecars", "-w", "a")
            keys = {"app", "mode", "status", "version", "started_at", "injected_at", "pod"}
            assert keys | {"rules_version", "sync"} <= set(row)
            assert (row["app"], row["mode"], row["status"], row["sync"]) == (
                "orders",
                "sidecar",
                "connected",
                "SYNCED",
            )
            code, out, _ = await ctl("sidecars", "-w", "a")
            assert code == 0 and "orders" in out.splitlines()[1]
            top = await ctl.json("top", "-w", "a", "--count", "1")
            assert top[0]["service"] == "orders-svc" and top[0]["caller"] == "*"
            drained = await ctl.json("sidecar", "fail", row["id"], "-w", "a")
            assert drained["health"] == "failed"
