"""Two control planes on one etcd: either serves, a data plane fails over, a store outage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.control.harness import ADMIN_PASSWORD, Api, eventually, sidecar_config
from tests.registry.servers import EtcdServer, running

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio


async def _control(procs: Procs, tmp: Path, name: str, store: str) -> str:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "store": store,
                "registry": f"file://{tmp}/reg?poll=0.05",
                "report_interval": 0.2,
            }
        )
    )
    argv = [sys.executable, "-m", "sofamesh.control", "-c", str(cfg), "--backend", procs.backend]
    ready = await procs.start(name, argv)
    return f"http://{ready['listen']}"


async def _login(client: httpx.AsyncClient, base: str) -> Api:
    resp = await client.post(
        f"{base}/api/v1/login", json={"user": "admin", "password": ADMIN_PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    api = Api(httpx.AsyncClient(base_url=base, timeout=30), resp.json()["token"])
    return api


async def test_two_control_planes_share_etcd_and_a_sidecar_fails_over(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    monkeypatch.setenv("SOFAMESH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    etcd = EtcdServer(tmp_path / "etcd")
    (tmp_path / "etcd").mkdir()
    with running(etcd):
        async with Procs(tmp_path, anyio_backend) as procs, httpx.AsyncClient() as raw:
            url_a = await _control(procs, tmp_path, "control-a", etcd.url)
            url_b = await _control(procs, tmp_path, "control-b", etcd.url)
            a, b = await _login(raw, url_a), await _login(raw, url_b)
            await a.ok("POST", "/api/v1/workspaces", {"name": "a"})
            assert [w["name"] for w in await b.ok("GET", "/api/v1/workspaces")] == ["a"]
            token = await b.token_for("a", "dataplane")  # made on B, used against A first
            app = await procs.plain_app("a")
            control = f"{url_a},{url_b}"
            await procs.sidecar(
                "orders", sidecar_config(tmp_path, control, token, "orders", app["port"])
            )
            v1 = await a.ok(
                "POST", "/api/v1/workspaces/a/rules", {"document": {}, "message": "one"}
            )
            assert v1["version"] == "v1"

            async def runs(api: Api, version: str) -> bool:
                rows = await api.ok("GET", "/api/v1/workspaces/a/sidecars")
                return (
                    bool(rows)
                    and rows[0]["rules_version"] == version
                    and rows[0]["sync"] == "SYNCED"
                )

            await eventually(lambda: runs(b, "v1"), what="v1 seen through B")
            procs.kill("control-a")
            v2 = await b.ok(
                "POST", "/api/v1/workspaces/a/rules", {"document": {}, "message": "two"}
            )
            assert v2["version"] == "v2"  # numbered after A's v1: one shared history
            await eventually(lambda: runs(b, "v2"), timeout=20, what="the sidecar failed over to B")

            # The store goes down: reads answer from the last known state, writes get 503.
            history = await b.ok("GET", "/api/v1/workspaces/a/rules/history")
            await etcd.stop_async()
            assert await b.ok("GET", "/api/v1/workspaces/a/rules/history") == history
            status, data = await b.call("POST", "/api/v1/workspaces/a/rules", {"document": {}})
            assert status == 503 and "store" in data["error"]
            await etcd.start_async()
            v3 = await b.ok("POST", "/api/v1/workspaces/a/rules", {"document": {}, "message": "3"})
            assert v3["version"] == "v3"
            await eventually(lambda: runs(b, "v3"), timeout=20, what="converged after the outage")
            for api in (a, b):
                await api.client.aclose()
