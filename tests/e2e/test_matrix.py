"""The issue's interop matrix, in real processes on 127.0.0.1, on the public plugin.

Consumers {SDK in sdk mode, the same code in sidecar mode, a plain HTTP client
through a sidecar} x providers {ASGI app served by the SDK in its own process,
the same app as a plain process behind a sidecar}: every cell calls a service
with two instances, sees both serve, then SIGKILLs one and shows that it stops
receiving traffic while calls keep working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from sofamesh.testing import MeshFactory, ProviderFactory, ProviderHandle, SidecarFactory

pytestmark = pytest.mark.anyio

SERVICE = "com.example.Orders"
APP = "tests.testing.apps:orders"
Call = Callable[[], Awaitable[httpx.Response]]


@asynccontextmanager
async def consumer(kind: str, sidecar: SidecarFactory, mesh: MeshFactory) -> AsyncIterator[Call]:
    if kind == "sdk":
        async with (
            mesh("shop") as m,
            httpx.AsyncClient(transport=m.httpx_transport()) as client,
        ):
            yield lambda: client.get(f"http://{SERVICE}/orders/1")
        return
    shop = await sidecar("shop", outbound=[{"protocol": "http"}])
    if kind == "plain-via-sidecar":
        async with httpx.AsyncClient() as client:  # a plain client: no mesh code at all
            url = shop.outbound_url("http")
            yield lambda: client.get(f"{url}/orders/1", headers={"host": SERVICE})
        return
    # The same application code as in sdk mode; only the configuration differs.
    async with (
        mesh("shop", mode="sidecar", sidecar=shop) as m,
        httpx.AsyncClient(transport=m.httpx_transport()) as client,
    ):
        yield lambda: client.get(f"http://{SERVICE}/orders/1")


async def instances_seen(call: Call, n: int) -> set[int]:
    seen = set()
    for _ in range(n):
        resp = await call()
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        assert body["path"] == "/orders/1"
        seen.add(body["pid"])
    return seen


@pytest.mark.parametrize("provider_shape", ["sdk-process", "sidecar"])
@pytest.mark.parametrize("consumer_kind", ["sdk", "sdk-sidecar-mode", "plain-via-sidecar"])
async def test_cell(
    sofamesh_sidecar: SidecarFactory,
    sofamesh_mesh: MeshFactory,
    sofamesh_provider: ProviderFactory,
    consumer_kind: str,
    provider_shape: str,
) -> None:
    async with AsyncExitStack() as stack:
        providers: list[ProviderHandle] = [
            await stack.enter_async_context(
                sofamesh_provider(provider_shape, APP, [SERVICE], app=f"orders-{i}")
            )
            for i in (1, 2)
        ]
        i1, i2 = (p.processes[0].pid for p in providers)
        async with consumer(consumer_kind, sofamesh_sidecar, sofamesh_mesh) as call:
            with anyio.fail_after(10):
                while await instances_seen(call, 4) != {i1, i2}:
                    pass  # until discovery has both instances
            # The caller's identity travels with the call.
            assert (await call()).json()["caller"] == "shop"
            providers[0].kill()
            # Every call still succeeds (connect failures retry elsewhere), and i1
            # soon gets nothing: within a few seconds, 20 calls in a row land on i2.
            with anyio.fail_after(10):
                while await instances_seen(call, 20) != {i2}:
                    pass
