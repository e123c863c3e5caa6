"""The plugin's fixtures against real sidecar processes and SDK meshes on one registry."""

from __future__ import annotations

import os

import httpx
import pytest

from sofamesh.testing import (
    MeshFactory,
    ProviderFactory,
    RulesRejected,
    SidecarFactory,
    assert_reached,
    calls_to,
    fault_applied,
    rules_applied,
    wait_endpoints,
)

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
APP = "tests.testing.apps:orders"


async def test_sidecar_handle_reports_its_addresses_stats_and_clusters(
    sofamesh_sidecar: SidecarFactory, sofamesh_provider: ProviderFactory
) -> None:
    async with sofamesh_provider("sdk", APP, [ORDERS]):
        shop = await sofamesh_sidecar("shop", outbound=[{"protocol": "http"}])
        assert shop.outbound_url("http").startswith("http://127.0.0.1:")
        await wait_endpoints(shop, ORDERS, 1)
        async with httpx.AsyncClient(base_url=shop.outbound_url()) as c:
            r = await c.get("/orders/1", headers={"host": ORDERS})
        assert r.status_code == 200 and r.json()["caller"] == "shop"
        await assert_reached(shop, ORDERS, 1)
        [cluster] = [c for c in await shop.clusters() if c["service"] == ORDERS]
        assert [e["health"] for e in cluster["endpoints"]] == ["healthy"]
        assert (await shop.stats())["services"][0]["rq_total"] == 1
        with pytest.raises(LookupError):
            shop.outbound_url("bolt")


async def test_set_rules_is_in_force_on_return_and_rejects_bad_documents(
    sofamesh_sidecar: SidecarFactory, sofamesh_provider: ProviderFactory
) -> None:
    async with sofamesh_provider("sdk", APP, [ORDERS]):
        shop = await sofamesh_sidecar("shop", outbound=[{"protocol": "http"}])
        await wait_endpoints(shop, ORDERS, 1)
        async with httpx.AsyncClient(base_url=shop.outbound_url()) as c:
            get = lambda: c.get("/x", headers={"host": ORDERS})  # noqa: E731
            async with fault_applied(shop, ORDERS, code=503):
                assert (await get()).status_code == 503
            assert (await get()).status_code == 200
            with pytest.raises(RulesRejected, match=r"rate_limits\[0\]\.count"):
                await shop.set_rules({"rate_limits": [{"service": ORDERS}]})
            assert (await get()).status_code == 200


async def test_sdk_mesh_in_both_modes_reaches_a_plain_app_behind_a_sidecar(
    sofamesh_sidecar: SidecarFactory,
    sofamesh_mesh: MeshFactory,
    sofamesh_provider: ProviderFactory,
) -> None:
    async with sofamesh_provider("sidecar", APP, [ORDERS]) as provider:
        assert provider.sidecar is not None
        upstream_pid = provider.processes[0].pid
        local = await sofamesh_sidecar("shop", outbound=[{"protocol": "http"}])
        async with (
            sofamesh_mesh("shop") as sdk,
            sofamesh_mesh("shop", mode="sidecar", sidecar=local) as via_sidecar,
        ):
            await wait_endpoints(sdk, ORDERS, 1)
            for mesh in (sdk, via_sidecar):
                resp = await mesh.request(ORDERS, "GET", "/orders/1")
                assert resp.status == 200
            await assert_reached(sdk, ORDERS, 1)
            await assert_reached(local, ORDERS, 1)  # the sidecar-mode call went through it
        assert await calls_to(provider.sidecar, ORDERS, direction="inbound") == 2
        assert upstream_pid != os.getpid()


async def test_a_rule_applied_to_an_sdk_mesh_is_lifted_after_the_block(
    sofamesh_mesh: MeshFactory, sofamesh_provider: ProviderFactory
) -> None:
    limit = {"rate_limits": [{"service": ORDERS, "direction": "outbound", "count": 1}]}
    async with sofamesh_provider("sdk", APP, [ORDERS]), sofamesh_mesh("shop") as mesh:
        await wait_endpoints(mesh, ORDERS, 1)
        async with rules_applied(mesh, limit):
            codes = [(await mesh.request(ORDERS, "GET", "/")).status for _ in range(3)]
            assert codes == [200, 429, 429]
        assert (await mesh.request(ORDERS, "GET", "/")).status == 200
