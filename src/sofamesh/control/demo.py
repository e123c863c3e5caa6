"""The demo's control plane: started with the demo mesh, its data planes report to it.

`python -m sofamesh.demo` calls `start_demo_control` before the mesh starts and
adds `mesh_keys()` to each sidecar's and the SDK app's config; the summary ends
with the `sofamesh ctl` commands that show the running mesh.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

import attrs
import httpx
import yaml

from sofamesh.demo.procs import Procs

WORKSPACE = "demo"
# A rule in shadow mode: counted per data plane (`rules/decisions`), never enforced.
DEMO_RULES = {
    "rate_limits": [
        {
            "name": "inventory-qps",
            "service": "com.example.Inventory",
            "count": 5,
            "enforcement": {"shadow": True},
        }
    ]
}


@attrs.define
class DemoControl:
    url: str
    admin_token: str
    dataplane_token: str
    password: str

    def mesh_keys(self) -> dict[str, Any]:
        return {
            "control": self.url,
            "control_token": self.dataplane_token,
            "workspace": WORKSPACE,
        }

    async def sync_summary(self) -> str:
        reporting, synced = await self.sync_counts()
        return f"{reporting} data planes reporting, {synced} SYNCED"

    async def sync_counts(self) -> tuple[int, int]:
        """(data planes reporting, of which SYNCED)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as c:
            headers = {"authorization": f"Bearer {self.admin_token}"}
            rows = (await c.get(f"/api/v1/workspaces/{WORKSPACE}/sidecars", headers=headers)).json()
        return len(rows), sum(1 for r in rows if r["sync"] == "SYNCED")

    def commands(self) -> list[str]:
        ctl = "sofamesh ctl" if _has_script() else f"{sys.executable} -m sofamesh.cli ctl"
        return [
            f"control plane: {self.url}  (admin password: {self.password})",
            f"  export SOFAMESH_SERVER={self.url} SOFAMESH_TOKEN={self.admin_token}",
            f"  {ctl} services -w {WORKSPACE}",
            f"  {ctl} sidecars -w {WORKSPACE}",
            f"  {ctl} rules history -w {WORKSPACE}",
            f"  {ctl} top -w {WORKSPACE}",
        ]


def _has_script() -> bool:
    return (Path(sys.executable).parent / "sofamesh").exists()


async def start_demo_control(procs: Procs, workdir: Path, registry: str) -> DemoControl:
    """A control plane on a free port, a `demo` workspace, its tokens and a shadow rule."""
    password = secrets.token_urlsafe(9)
    os.environ["SOFAMESH_ADMIN_PASSWORD"] = password  # read by the child on its first start
    os.environ["SOFAMESH_STATE_DIR"] = str(workdir / "state")
    cfg = workdir / "control.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "store": f"sqlite://{workdir}/control.db",
                "registry": registry,
                "report_interval": 1.0,
            }
        )
    )
    argv = [sys.executable, "-m", "sofamesh.control", "-c", str(cfg), "--backend", procs.backend]
    ready = await procs.start("control", argv)
    url = f"http://{ready['listen']}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        login = await c.post("/api/v1/login", json={"user": "admin", "password": password})
        token = login.json()["token"]
        headers = {"authorization": f"Bearer {token}"}
        await c.post("/api/v1/workspaces", json={"name": WORKSPACE}, headers=headers)
        dp = await c.post(
            f"/api/v1/workspaces/{WORKSPACE}/tokens",
            json={"role": "dataplane", "name": "demo"},
            headers=headers,
        )
        await c.post(
            f"/api/v1/workspaces/{WORKSPACE}/rules",
            json={"document": DEMO_RULES, "message": "inventory rate limit, in shadow"},
            headers=headers,
        )
    return DemoControl(url, token, dp.json()["token"], password)
