"""Dubbo in ZooKeeper, against a real ZooKeeper: a provider a Dubbo app registered in Dubbo's
layout is discovered and called (its version and group respected); an SDK provider
appears where and as Dubbo expects it; SDK to SDK through ZooKeeper."""

from __future__ import annotations

import uuid

import pytest
from dubbo_support import SERVICE, free_port, node_provider
from tests.registry import servers
from tests.registry.servers import ZooKeeperServer

import sofamesh
from sofamesh.endpoint import Endpoint
from sofamesh.registry.dubbo_url import (
    consumer_url,
    endpoint_to_url,
    java_url_decode,
    java_url_encode,
    parse_url,
    provider_for,
    url_to_endpoint,
)
from sofamesh.registry.zookeeper import ZooKeeperRegistry
from sofamesh.sdk.mesh import Mesh

pytestmark = pytest.mark.anyio
zookeeper_server = servers.zookeeper_server

IFACE, VERSION = SERVICE.split(":")


def provider_node(port: int, version: str, group: str = "") -> str:
    """A provider node name as Dubbo 2.7's ZookeeperRegistry writes it."""
    url = (
        f"dubbo://127.0.0.1:{port}/{IFACE}?anyhost=true&application=node-demo&dubbo=2.0.2"
        f"&dynamic=true&generic=false{'&group=' + group if group else ''}&interface={IFACE}"
        f"&methods=add,echo,fail,sayHello,sleep&pid=1&side=provider&timestamp=1700000000000"
        f"&version={version}"
    )
    return java_url_encode(url)


def mesh_config(app: str, zk: ZooKeeperServer, workspace: str) -> dict[str, str]:
    return {"app": app, "registry": f"zookeeper://127.0.0.1:{zk.port}?workspace={workspace}"}


async def check(mesh: Mesh) -> None:
    demo = mesh.dubbo_consumer(IFACE, version=VERSION, methods={"add": ["int", "int"]})
    for _ in range(4):  # every call: the other versions' and groups' providers are dead
        assert await demo.add(2, 40) == 42


async def test_a_dubbo_apps_provider_in_zookeeper_is_called(zookeeper_server: ZooKeeperServer):
    workspace = f"d{uuid.uuid4().hex[:8]}"
    dead = free_port()
    with node_provider() as port:
        async with ZooKeeperRegistry(
            [("127.0.0.1", zookeeper_server.port)], workspace=workspace
        ) as reg:
            base = f"/{workspace}/{IFACE}/providers/"
            for node in (provider_node(port, VERSION), provider_node(dead, "2.0.0"),
                         provider_node(dead, VERSION, group="other")):  # fmt: skip
                await reg.zk.call("create", base + node, b"", ephemeral=True, makepath=True)
            async with sofamesh.open_mesh(mesh_config("py", zookeeper_server, workspace)) as mesh:
                await check(mesh)


def test_a_consumer_registers_its_interface_version_and_group() -> None:
    url = consumer_url(f"g1/{SERVICE}", "10.0.0.1", app="shop", timestamp_ms=1, pid=2)
    scheme, _, _, path, params = parse_url(url)
    assert (scheme, path, params["interface"]) == ("consumer", IFACE, IFACE)
    assert (params["version"], params["group"], params["side"]) == (VERSION, "g1", "consumer")
    assert parse_url(consumer_url("plain", "h", app="a", timestamp_ms=1, pid=2))[3] == "plain"


async def test_an_sdk_provider_registers_as_dubbo_expects(zookeeper_server: ZooKeeperServer):
    workspace = f"d{uuid.uuid4().hex[:8]}"

    class Demo:
        def add(self, a: int, b: int) -> int:
            return a + b

    cfg = mesh_config("py-prov", zookeeper_server, workspace)
    async with (
        sofamesh.open_mesh(cfg, env={}) as prov,
        prov.serve_dubbo(Demo(), interface=IFACE, version=VERSION) as served,
        ZooKeeperRegistry([("127.0.0.1", zookeeper_server.port)], workspace=workspace) as reg,
    ):
        (node,) = await reg.zk.call("get_children", f"/{workspace}/{IFACE}/providers")
        scheme, host, port, path, params = parse_url(java_url_decode(node))
        assert (scheme, host, port, path) == ("dubbo", "127.0.0.1", served.address.port, IFACE)
        assert params["interface"] == IFACE and params["version"] == VERSION
        assert params["application"] == "py-prov" and params["side"] == "provider"
        assert params["timestamp"].isdigit() and params["methods"] == "add"
        async with sofamesh.open_mesh(mesh_config("shop", zookeeper_server, workspace)) as mesh:
            await check(mesh)


@pytest.mark.parametrize("key", [SERVICE, f"g1/{SERVICE}", f"g1/{IFACE}", IFACE])
def test_a_service_key_survives_its_provider_node(key: str) -> None:
    ep = Endpoint(key, "10.0.0.1", 20880, protocol="dubbo", app="a", meta={"methods": "add"})
    url = endpoint_to_url(ep, timestamp_ms=1, pid=2)
    assert parse_url(url)[3] == IFACE
    back = provider_for(url_to_endpoint(url), key)
    assert back is not None and (back.service, back.key, back.app) == (key, ep.key, "a")
    assert provider_for(url_to_endpoint(url), f"other/{SERVICE}") is None
