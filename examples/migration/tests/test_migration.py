"""The shop moves from the SDK to a sidecar; the orders service runs as an SDK provider or as
a plain app behind a sidecar. Every combination must behave the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from migration_example.orders import SERVICE
from migration_example.shop import order_status

from sofamesh.testing import (
    MeshFactory,
    ProviderFactory,
    SidecarFactory,
    Target,
    assert_reached,
    rules_applied,
    wait_endpoints,
)

pytestmark = pytest.mark.anyio

ORDERS_APP = "migration_example.orders:app"
LIMIT = {
    "rate_limits": [{"name": "shop-qps", "service": SERVICE, "direction": "outbound", "count": 2}]
}


@asynccontextmanager
async def shop(
    mode: str, sofamesh_mesh: MeshFactory, sofamesh_sidecar: SidecarFactory, orders: int = 1
) -> AsyncIterator[tuple[httpx.AsyncClient, Target]]:
    """The shop's HTTP client in `mode`, and what holds its stats (its mesh or its sidecar),
    once it sees `orders` instances of the orders service."""
    if mode == "sdk":
        async with sofamesh_mesh("shop") as mesh:
            await wait_endpoints(mesh, SERVICE, orders)
            async with httpx.AsyncClient(transport=mesh.httpx_transport()) as client:
                yield client, mesh
        return
    sidecar = await sofamesh_sidecar("shop", outbound=[{"protocol": "http"}])
    await wait_endpoints(sidecar, SERVICE, orders)
    async with (
        sofamesh_mesh("shop", mode="sidecar", sidecar=sidecar) as mesh,
        httpx.AsyncClient(transport=mesh.httpx_transport()) as client,
    ):
        yield client, sidecar


@pytest.mark.parametrize("orders_shape", ["sdk", "sidecar"])
@pytest.mark.parametrize("shop_mode", ["sdk", "sidecar"])
async def test_the_shop_reads_orders_whatever_runs_the_mesh(
    sofamesh_mesh: MeshFactory,
    sofamesh_sidecar: SidecarFactory,
    sofamesh_provider: ProviderFactory,
    shop_mode: str,
    orders_shape: str,
) -> None:
    async with (
        sofamesh_provider(orders_shape, ORDERS_APP, [SERVICE], app="orders"),
        shop(shop_mode, sofamesh_mesh, sofamesh_sidecar) as (client, stats),
    ):
        for order in ("1", "2", "3"):
            status, body = await order_status(client, order)
            assert status == 200 and body["order"] == order and body["caller"] == "shop"
        await assert_reached(stats, SERVICE, 3)


@pytest.mark.parametrize("orders_shape", ["sdk-process", "sidecar"])
async def test_a_killed_orders_instance_costs_the_shop_no_call(
    sofamesh_mesh: MeshFactory,
    sofamesh_sidecar: SidecarFactory,
    sofamesh_provider: ProviderFactory,
    orders_shape: str,
) -> None:
    async with (
        sofamesh_provider(orders_shape, ORDERS_APP, [SERVICE], app="orders-a") as a,
        sofamesh_provider(orders_shape, ORDERS_APP, [SERVICE], app="orders-b") as b,
        shop("sidecar", sofamesh_mesh, sofamesh_sidecar, orders=2) as (client, _),
    ):
        a.kill()
        survivor = b.processes[0].pid
        with anyio.fail_after(10):  # the killed instance is soon out of rotation
            while True:
                served = [await order_status(client, str(i)) for i in range(10)]
                assert all(status == 200 for status, _ in served)  # no call fails meanwhile
                if {body["served_by"] for _, body in served} == {survivor}:
                    break


@pytest.mark.parametrize("shop_mode", ["sdk", "sidecar"])
async def test_a_rate_limit_holds_in_both_shop_modes_and_is_lifted_after(
    sofamesh_mesh: MeshFactory,
    sofamesh_sidecar: SidecarFactory,
    sofamesh_provider: ProviderFactory,
    shop_mode: str,
) -> None:
    async with (
        sofamesh_provider("sidecar", ORDERS_APP, [SERVICE], app="orders"),
        shop(shop_mode, sofamesh_mesh, sofamesh_sidecar) as (client, holder),
    ):
        async with rules_applied(holder, LIMIT):
            codes = [(await order_status(client, "1"))[0] for _ in range(5)]
            assert codes[:2] == [200, 200] and codes.count(429) >= 2
        assert (await order_status(client, "1"))[0] == 200
