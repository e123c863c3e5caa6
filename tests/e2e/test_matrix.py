"""The issue's interop matrix, in real processes on 127.0.0.1.

Consumers {SDK in sdk mode, the same code in sidecar mode, a plain HTTP client
through a sidecar} x providers {ASGI app served by the SDK, plain HTTP app behind
a sidecar}: every cell calls a service with two instances, sees both serve, then
SIGKILLs one and shows that it stops receiving traffic while calls keep working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import sofamesh
from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio

SERVICE = "com.example.Orders"
Call = Callable[[], Awaitable[httpx.Response]]


async def start_providers(procs: Procs, kind: str, registry: str) -> list[list[str]]:
    """Two instances of SERVICE; each instance is the names of the processes that make it."""
    instances = []
    for i in ("i1", "i2"):
        if kind == "sdk":
            await procs.sdk_provider(i, SERVICE, registry)
            instances.append([i])
            continue
        app = await procs.plain_app(i)
        await procs.sidecar(
            f"orders-{i}",
            {
                "app": f"orders-{i}",
                "registry": registry,
                "admin": "127.0.0.1:0",
                "inbound": [
                    {
                        "protocol": "http",
                        "listen": "127.0.0.1:0",
                        "upstream": f"127.0.0.1:{app['port']}",
                        "services": [SERVICE],
                    }
                ],
            },
        )
        instances.append([f"sidecar-orders-{i}", f"plain-{i}"])
    return instances


@asynccontextmanager
async def consumer(procs: Procs, kind: str, registry: str) -> AsyncIterator[Call]:
    if kind == "sdk":
        cfg: dict[str, Any] = {"app": "shop", "registry": registry}
    else:
        outbound = {"protocol": "http", "listen": "127.0.0.1:0"}
        sidecar = await procs.sidecar(
            "shop",
            {"app": "shop", "registry": registry, "admin": "127.0.0.1:0", "outbound": [outbound]},
        )
        if kind == "plain-via-sidecar":
            address = sidecar["outbound[0]"]
            async with httpx.AsyncClient() as client:  # a plain client: no mesh code at all
                yield lambda: client.get(f"http://{address}/orders/1", headers={"host": SERVICE})
            return
        # The same application code as in sdk mode; only the configuration differs.
        cfg = {"app": "shop", "mode": "sidecar", "sidecar": sidecar["admin"]}
    async with (
        sofamesh.open_mesh(cfg, env={}) as mesh,
        httpx.AsyncClient(transport=mesh.httpx_transport()) as client,
    ):
        yield lambda: client.get(f"http://{SERVICE}/orders/1")


async def instances_seen(call: Call, n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        resp = await call()
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        assert body["path"] == "/orders/1"
        seen.add(body["instance"])
    return seen


@pytest.mark.parametrize("provider_kind", ["sdk", "sidecar"])
@pytest.mark.parametrize("consumer_kind", ["sdk", "sdk-sidecar-mode", "plain-via-sidecar"])
async def test_cell(
    tmp_path: Path, anyio_backend: str, consumer_kind: str, provider_kind: str
) -> None:
    registry = f"file://{tmp_path}/registry?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        instances = await start_providers(procs, provider_kind, registry)
        async with consumer(procs, consumer_kind, registry) as call:
            with anyio.fail_after(10):
                while await instances_seen(call, 4) != {"i1", "i2"}:
                    pass  # until discovery has both instances
            # The caller's identity travels with the call.
            assert (await call()).json()["caller"] == "shop"
            for name in instances[0]:
                procs.kill(name)
            # Every call still succeeds (connect failures retry elsewhere), and i1
            # soon gets nothing: within a few seconds, 20 calls in a row land on i2.
            with anyio.fail_after(10):
                while await instances_seen(call, 20) != {"i2"}:
                    pass
