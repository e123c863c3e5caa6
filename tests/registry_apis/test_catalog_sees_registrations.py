"""An app registered through a sidecar's Eureka API is in the control plane's catalog;
what it may not register, and what a browser sends, are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.control.harness import (
    control_with_workspace,
    eventually,
    sidecar_config,
)

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio


async def test_the_catalog_lists_a_eureka_registration(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with (
        control_with_workspace(tmp_path, monkeypatch) as (cp, admin, token),
        Procs(tmp_path, anyio_backend) as procs,
    ):
        app = await procs.plain_app("billing-1")
        cfg = sidecar_config(tmp_path, f"http://{cp.bound}", token, "billing", app["port"])
        cfg["local_api"] = {"services": ["billing"]}
        cfg["registry_apis"] = {"eureka": {"listen": "127.0.0.1:0"}}
        ready = await procs.sidecar("billing", cfg)
        body = {
            "instance": {
                "instanceId": "billing-1", "app": "BILLING", "ipAddr": "127.0.0.1",
                "port": {"$": app["port"], "@enabled": "true"}, "status": "UP",
                "metadata": {"version": "4.0", "zone": "z1"},
            }
        }  # fmt: skip
        async with httpx.AsyncClient() as http:
            eureka = f"http://{ready['registry_apis.eureka']}/eureka"
            r = await http.post(f"{eureka}/apps/BILLING", json=body)
            assert r.status_code == 204
            refused = await http.post(f"{eureka}/apps/OTHER", json=body)
            assert refused.status_code == 403  # not a service this app may publish
            # What only a browser sends: an Origin, or a rebound name in Host.
            page = {"origin": "http://evil.example"}
            assert (await http.get(f"{eureka}/apps", headers=page)).status_code == 403
            rebound = {"host": "evil.example:8761"}
            assert (await http.get(f"{eureka}/apps", headers=rebound)).status_code == 403

        async def listed() -> Any:
            rows = await admin.ok("GET", "/api/v1/workspaces/a/services")
            return next((s for s in rows if s["name"] == "billing" and s["providers"]), None)

        row = await eventually(listed, what="billing in the catalog")
        (provider,) = row["providers"]
        assert provider["address"] == ready["inbound[0]"]
        assert (provider["version"], provider["zone"]) == ("4.0", "z1")
