"""nacos-sdk-python 1.x (the HTTP open API v1 client), unchanged, against a real sidecar.

The app registers with beats every second, lists an SDK app's healthy
instances and calls one through its sidecar, and is called by an SDK app; an
app that never beats turns unhealthy (and leaves the mesh) after the beat
timeout and is deleted after the delete timeout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import nacos
import pytest

from sofamesh.demo.procs import Procs
from sofamesh.registry import open_registry
from sofamesh.sdk.mesh import open_mesh
from sofamesh.testing.process import poll_until

pytestmark = [
    pytest.mark.anyio,
    # The client's own code (every request makes an unused SSL context the old way).
    pytest.mark.filterwarnings("ignore:ssl.SSLContext\\(\\) without protocol:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning"),
]


def _sidecar_config(registry: str) -> dict[str, Any]:
    return {
        "app": "stock",
        "registry": registry,
        "inbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "local_api": {"services": ["*"]},
        "registry_apis": {"nacos": {"listen": "127.0.0.1:0", "lease": 2, "delete_after": 4}},
    }


async def test_nacos_app_joins_the_mesh(tmp_path: Path, anyio_backend: str) -> None:
    registry = f"file://{tmp_path}/registry?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        await procs.sdk_provider("orders-1", "orders", registry)
        app = await procs.plain_app("stock-1")
        sidecar = await procs.sidecar("stock", _sidecar_config(registry))
        client = nacos.NacosClient(sidecar["registry_apis.nacos"], namespace="")

        def register() -> bool:
            meta = {"version": "1.2"}
            port = app["port"]
            return bool(
                client.add_naming_instance(
                    "stock", "127.0.0.1", port, metadata=meta, heartbeat_interval=1
                )
            )

        try:
            assert await anyio.to_thread.run_sync(register)

            async def orders_hosts() -> list[Any]:
                found = await anyio.to_thread.run_sync(
                    lambda: client.list_naming_instance("orders", healthy_only=True)
                )
                return list(found["hosts"])

            await poll_until(lambda: _non_empty(orders_hosts), 15)
            host = (await orders_hosts())[0]
            async with httpx.AsyncClient() as http:
                r = await http.get(f"http://{host['ip']}:{host['port']}/x")
            assert (r.json()["instance"], r.json()["caller"]) == ("orders-1", "stock")
            async with open_mesh({"app": "buyer", "registry": registry}) as mesh:
                resp = await mesh.request("stock", "GET", "/hello", timeout=10)
                assert json.loads(resp.body)["instance"] == "stock-1"
            # The beats keep it healthy past the 2 s beat timeout.
            past = time.monotonic() + 3

            async def kept() -> bool:
                mine = await anyio.to_thread.run_sync(lambda: client.list_naming_instance("stock"))
                seen = [(h["healthy"], h["metadata"]["version"]) for h in mine["hosts"]]
                assert seen == [(True, "1.2")]
                return time.monotonic() > past

            await poll_until(kept, 10)
            async with httpx.AsyncClient() as http:
                url = f"http://{sidecar['registry_apis.nacos']}/nacos/v1/ns/service/list"
                names = (await http.get(url, params={"pageNo": 1, "pageSize": 100})).json()
            assert {"orders", "stock"} <= set(names["doms"])
        finally:
            for task in client.heartbeats.values():  # the client's own beat threads
                task.stop()


async def _non_empty(read: Any) -> bool:
    return bool(await read())


async def test_a_nacos_app_without_beats_turns_unhealthy_then_goes(
    tmp_path: Path, anyio_backend: str
) -> None:
    registry = f"file://{tmp_path}/registry?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("stock-1")
        sidecar = await procs.sidecar("stock", _sidecar_config(registry))
        client = nacos.NacosClient(sidecar["registry_apis.nacos"], namespace="")
        await anyio.to_thread.run_sync(
            lambda: client.add_naming_instance("stock", "127.0.0.1", app["port"])
        )

        async def hosts() -> list[Any]:
            found = await anyio.to_thread.run_sync(lambda: client.list_naming_instance("stock"))
            return list(found["hosts"])

        async with open_registry(registry) as reg:

            async def listed() -> bool:
                return "stock" in await reg.list_services()

            async def unhealthy() -> bool:
                return not await listed() and [h["healthy"] for h in await hosts()] == [False]

            async def deleted() -> bool:
                return await hosts() == []

            await poll_until(listed, 10)
            await poll_until(unhealthy, 2 + 2 + 5)  # the beat timeout, the sweep, the poll
            await poll_until(deleted, 4 + 2)
