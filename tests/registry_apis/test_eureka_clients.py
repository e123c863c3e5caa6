"""py-eureka-client, unchanged, as an app behind a real sidecar process.

The Eureka app registers with its own sidecar, calls an SDK app through
`do_service` (its call takes the sidecar's outbound chain), and is called by an
SDK app through the mesh; once it stops renewing, its service leaves the mesh
within its 3 s lease.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from sofamesh.demo.procs import Procs
from sofamesh.registry import open_registry
from sofamesh.sdk.mesh import open_mesh
from sofamesh.testing.process import poll_until

pytestmark = pytest.mark.anyio
APP = Path(__file__).with_name("eureka_app.py")


async def test_eureka_app_joins_the_mesh(tmp_path: Path, anyio_backend: str) -> None:
    registry = f"file://{tmp_path}/registry?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        await procs.sdk_provider("orders-1", "orders", registry)
        sidecar = await procs.sidecar(
            "shop",
            {
                "app": "shop",
                "registry": registry,
                "inbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
                "local_api": {"services": ["*"]},
                "registry_apis": {"eureka": {"listen": "127.0.0.1:0"}},
            },
        )
        eureka = f"http://{sidecar['registry_apis.eureka']}/eureka/"
        await procs.start("eureka-shop", [sys.executable, str(APP), eureka, "shop"])
        async with httpx.AsyncClient() as http:
            # Lookups: the SDK app is an Eureka application, listed at this sidecar's port for it.
            async def listed() -> bool:
                r = await http.get(f"{eureka}apps", headers={"accept": "application/json"})
                names = [a["name"] for a in r.json()["applications"]["application"]]
                return "ORDERS" in names and "SHOP" in names

            await poll_until(listed, 15)
            xml = (await http.get(f"{eureka}apps/ORDERS")).text
            assert xml.startswith("<application><name>ORDERS</name><instance>")
            # The Eureka app calls the SDK app with do_service, through its sidecar.
            app = procs.running["eureka-shop"][1]
            r = await http.get(f"http://127.0.0.1:{app['port']}/call?app=ORDERS&path=/x")
            reply = json.loads(r.text)
            assert (reply["instance"], reply["path"], reply["caller"]) == ("orders-1", "/x", "shop")
        # An SDK app calls the Eureka app through the mesh (the provider's sidecar).
        async with open_mesh({"app": "buyer", "registry": registry}) as mesh:
            resp = await mesh.request("shop", "GET", "/hello", timeout=10)
            assert json.loads(resp.body) == {"app": "shop", "path": "/hello"}
        # It stops renewing: gone from the mesh within its lease.
        procs.kill("eureka-shop")
        async with open_registry(registry) as reg:

            async def gone() -> bool:
                return "shop" not in await reg.list_services()

            await poll_until(gone, 3 + 2 + 5)  # lease, the sweep, the registry's poll
