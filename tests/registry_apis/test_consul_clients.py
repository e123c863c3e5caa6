"""py-consul, unchanged, as an app's registry client against a real sidecar process.

The app (a plain HTTP server) registers with a TTL check through py-consul,
passes it, finds an SDK app's instances with `health.service(passing=True)` and
calls one (through its sidecar); an SDK app calls it through the mesh; a
blocking query wakes when the check fails; once the app stops passing its
check, the service leaves the mesh within the TTL.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import consul
import httpx
import pytest

from sofamesh.demo.procs import Procs
from sofamesh.registry import open_registry
from sofamesh.sdk.mesh import open_mesh
from sofamesh.testing.process import poll_until

pytestmark = pytest.mark.anyio


def _sidecar_config(registry: str) -> dict[str, Any]:
    return {
        "app": "billing",
        "registry": registry,
        "inbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "local_api": {"services": ["*"]},
        "registry_apis": {"consul": {"listen": "127.0.0.1:0"}},
    }


async def test_consul_app_joins_the_mesh(tmp_path: Path, anyio_backend: str) -> None:
    registry = f"file://{tmp_path}/registry?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        await procs.sdk_provider("orders-1", "orders", registry)
        app = await procs.plain_app("billing-1")
        sidecar = await procs.sidecar("billing", _sidecar_config(registry))
        host, port = sidecar["registry_apis.consul"].rsplit(":", 1)
        c = consul.Consul(host=host, port=int(port))

        def register() -> list[Any]:
            c.agent.service.register(
                "billing", service_id="billing-1", address="127.0.0.1", port=app["port"],
                check=consul.Check.ttl("2s"), meta={"version": "3.1"},
            )  # fmt: skip
            before = c.health.service("billing", passing=True)[1]
            c.agent.check.ttl_pass("service:billing-1")
            return [before, c.health.service("billing", passing=True)[1]]

        before, after = await anyio.to_thread.run_sync(register)
        assert before == []  # a TTL check starts critical, as in Consul
        assert [e["Service"]["ID"] for e in after] == ["billing-1"]
        assert after[0]["Checks"][0]["Status"] == "passing"

        async def orders_listed() -> bool:
            found = await anyio.to_thread.run_sync(lambda: c.health.service("orders", passing=True))
            return bool(found[1])

        await poll_until(orders_listed, 15)
        _, nodes = await anyio.to_thread.run_sync(lambda: c.health.service("orders", passing=True))
        svc = nodes[0]["Service"]
        async with httpx.AsyncClient() as http:  # the app calls what Consul told it
            r = await http.get(f"http://{svc['Address']}:{svc['Port']}/x")
        reply = r.json()
        assert (reply["instance"], reply["caller"]) == ("orders-1", "billing")
        async with open_mesh({"app": "buyer", "registry": registry}) as mesh:
            resp = await mesh.request("billing", "GET", "/hello", timeout=10)
            assert json.loads(resp.body)["instance"] == "billing-1"
            assert mesh.runtime.clusters is not None
            meta = dict(mesh.runtime.clusters.get("billing").endpoints[0].meta)
            assert meta["instance_id"] == "billing-1"
        await _blocking_query_wakes(c)


async def _blocking_query_wakes(c: consul.Consul) -> None:
    index, _ = await anyio.to_thread.run_sync(lambda: c.health.service("billing", passing=True))
    woke: list[Any] = []

    def block() -> None:
        started = time.monotonic()
        found = c.health.service("billing", passing=True, index=index, wait="30s")
        woke.append((time.monotonic() - started, found))

    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, block)
        # Fail the check once the query is waiting: its index is the one it holds.
        await anyio.to_thread.run_sync(lambda: c.agent.check.ttl_fail("service:billing-1"))
    elapsed, (new_index, nodes) = woke[0]
    assert nodes == [] and int(new_index) > int(index)
    assert elapsed < 10  # woken by the change, not by `wait`


async def test_a_consul_app_that_stops_passing_leaves_the_mesh(
    tmp_path: Path, anyio_backend: str
) -> None:
    registry = f"file://{tmp_path}/registry?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("billing-1")
        sidecar = await procs.sidecar("billing", _sidecar_config(registry))
        host, port = sidecar["registry_apis.consul"].rsplit(":", 1)
        c = consul.Consul(host=host, port=int(port))

        def register() -> None:
            c.agent.service.register(
                "billing", service_id="billing-1", port=app["port"], check=consul.Check.ttl("2s")
            )
            c.agent.check.ttl_pass("service:billing-1")

        await anyio.to_thread.run_sync(register)
        async with open_registry(registry) as reg:

            async def listed() -> bool:
                return "billing" in await reg.list_services()

            async def gone() -> bool:
                return not await listed()

            await poll_until(listed, 10)
            await poll_until(gone, 2 + 2 + 5)  # the TTL, the sweep, the registry's poll
        checks = await anyio.to_thread.run_sync(c.agent.checks)
        assert checks["service:billing-1"]["Status"] == "critical"  # still registered, critical
