"""An SDK app and a sidecar, both processes: the catalog's providers, consumers and metrics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.control.harness import (
    control_with_workspace,
    eventually,
    sidecar_config,
)

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio


SDK_APP = """
import json, sys
import anyio
from sofamesh.sdk import open_mesh

async def hello(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})

async def main(config):
    async with open_mesh(config) as mesh, mesh.serve_asgi(hello, ["shop-svc"], lifespan=False):
        print("SDK READY " + json.dumps({"rules": mesh.governance.version}), flush=True)
        await anyio.sleep_forever()

anyio.run(main, sys.argv[1], backend=sys.argv[2])
"""


async def test_catalog_and_inventory_of_an_sdk_app_and_a_sidecar(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with control_with_workspace(tmp_path, monkeypatch) as (cp, admin, token):
        control = f"http://{cp.bound}"
        await admin.ok("POST", "/api/v1/workspaces/a/rules", {"document": {}, "message": "empty"})
        sdk_cfg = tmp_path / "shop.yaml"
        sdk_cfg.write_text(
            yaml.safe_dump(
                {
                    "app": "shop",
                    "registry": f"file://{tmp_path}/reg?poll=0.05",
                    "control": control,
                    "control_token": token,
                    "workspace": "a",
                }
            )
        )
        script = tmp_path / "sdk_app.py"
        script.write_text(SDK_APP)
        async with Procs(tmp_path, anyio_backend) as procs:
            argv = [sys.executable, str(script), str(sdk_cfg), anyio_backend]
            await procs.start("sdk-shop", argv)
            app = await procs.plain_app("a")
            cfg = sidecar_config(tmp_path, control, token, "orders", app["port"])
            ready = await procs.sidecar("orders", cfg)
            async with httpx.AsyncClient(base_url=f"http://{ready['outbound[0]']}") as c:
                for _ in range(5):
                    assert (await c.get("/", headers={"host": "shop-svc"})).status_code == 200

            async def catalog() -> list[dict[str, Any]] | None:
                services = await admin.ok("GET", "/api/v1/workspaces/a/services")
                shop = next((s for s in services if s["name"] == "shop-svc"), None)
                ok = shop and shop["consumers"] and shop["providers"]
                return services if ok and shop["consumers"][0]["metrics"]["rps"] else None

            services = await eventually(catalog, what="shop-svc with a consumer and traffic")
            shop = next(s for s in services if s["name"] == "shop-svc")
            assert [(p["app"], p["protocol"], p["mode"]) for p in shop["providers"]] == [
                ("shop", "http", "sdk")
            ]
            assert shop["consumers"][0]["app"] == "orders"
            assert shop["consumers"][0]["metrics"]["success_rate"] == 1.0
            assert {s["name"] for s in services} == {"shop-svc", "orders-svc"}

            async def all_synced() -> list[dict[str, Any]] | None:
                rows = await admin.ok("GET", "/api/v1/workspaces/a/sidecars")
                done = all(r["sync"] == "SYNCED" and r["rules_version"] == "v1" for r in rows)
                return rows if done else None

            rows = await eventually(all_synced, what="both data planes run v1")
            by_app = {r["app"]: r for r in rows}
            assert by_app["shop"]["mode"] == "sdk" and by_app["orders"]["mode"] == "sidecar"
            assert by_app["shop"]["provides"] == ["shop-svc"]
            assert by_app["orders"]["calls"] == ["shop-svc"]
            saved = tmp_path / "state" / "a-shop.rules.json"
            assert '"version": "v1"' in saved.read_text()  # the SDK app persisted what it runs
