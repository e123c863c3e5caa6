"""The Dubbo SDK against the real peers and itself: SDK consumer -> Node provider (direct,
through a provider sidecar, and in sidecar mode); Node consumer -> SDK provider (direct
and through a sidecar); values outside the BMP, ints and longs, maps, lists, the
provider's exception message, a slow method hitting its timeout."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from dubbo_support import SERVICE, meshed, node_call, node_provider, sidecar_config, sidecars

import sofamesh
from sofamesh.codecs import hessian2
from sofamesh.endpoint import Endpoint
from sofamesh.model import Status
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.sdk.dubbo import DubboCallError, RemoteError, current_dubbo_call
from sofamesh.sdk.mesh import Mesh

pytestmark = pytest.mark.anyio

IFACE, VERSION = SERVICE.split(":")
VALUES: list[Any] = [
    "\U0001f600 outside the BMP",
    2**40,
    hessian2.Long(7),
    -(2**31),
    {"k": "v", "n": [1, 2]},
    ["a", 1, None],
]


@asynccontextmanager
async def sdk_mesh(app: str, hub: MemoryHub | None = None) -> AsyncIterator[Mesh]:
    registry = MemoryRegistry(hub or MemoryHub())
    async with sofamesh.open_mesh(
        {"app": app, "registry": "memory://"}, env={}, registry=registry
    ) as m:
        yield m


class PyDemo:
    """The Python twin of server.js's DemoService."""

    def __init__(self) -> None:
        self.callers: list[str] = []

    def sayHello(self, name: str) -> str:  # Java's method name
        self.callers.append(current_dubbo_call.get().caller)
        return "Hello " + name

    def add(self, a: int, b: int) -> int:
        return a + b

    def echo(self, value: Any) -> Any:
        return value

    def fail(self, message: str) -> None:
        raise ValueError("boom: " + message)

    async def sleep(self, ms: int) -> str:
        await anyio.sleep(ms / 1000)
        return "slept"


async def check_consumer(mesh: Mesh) -> None:
    demo = mesh.dubbo_consumer(IFACE, version=VERSION, methods={"add": ["int", "int"]})
    assert await demo.add(2, 40) == 42
    assert await demo.sayHello("\U0001f600") == "Hello \U0001f600"
    for value in VALUES:
        assert await demo.echo(value) == value
    with pytest.raises(RemoteError, match="boom: bad"):
        await demo.fail("bad")
    with pytest.raises(DubboCallError) as late:
        await demo.call("sleep", hessian2.Int(2000), timeout=0.2)
    assert late.value.status is Status.TIMEOUT


async def test_sdk_consumer_calls_the_node_provider_directly() -> None:
    hub = MemoryHub()
    with node_provider() as port:
        async with MemoryRegistry(hub) as registry, sdk_mesh("py", hub) as mesh:
            await registry.publish(Endpoint(SERVICE, "127.0.0.1", port, protocol="dubbo"))
            await check_consumer(mesh)


async def test_sdk_consumer_through_a_sidecar_to_the_node_provider() -> None:
    with node_provider() as port:
        # The provider sidecar publishes the service in the process-wide memory registry.
        async with (
            meshed(port),
            sofamesh.open_mesh({"app": "py", "registry": "memory://"}, env={}) as mesh,
        ):
            await check_consumer(mesh)


async def test_sdk_consumer_in_sidecar_mode_to_the_node_provider() -> None:
    with node_provider() as port:
        shop = sidecar_config(
            "shop", admin="127.0.0.1:0", outbound=[{"protocol": "dubbo", "listen": "127.0.0.1:0"}]
        )
        prov = sidecar_config(
            "node-app", inbound=[{"protocol": "dubbo", "listen": "127.0.0.1:0",
                                  "upstream": f"127.0.0.1:{port}", "services": [SERVICE]}],
        )  # fmt: skip
        async with sidecars(prov, shop) as (_, car):
            cfg = {"app": "shop", "mode": "sidecar", "sidecar": str(car.bound["admin"])}
            async with sofamesh.open_mesh(cfg, env={}) as mesh:
                await check_consumer(mesh)


async def test_node_consumer_calls_an_sdk_provider_directly_and_through_a_sidecar() -> None:
    provider = PyDemo()
    async with (
        sdk_mesh("py") as mesh,
        mesh.serve_dubbo(provider, interface=IFACE, version=VERSION) as p,
    ):
        assert await node_call(p.address.port, "add", "int:2", "int:40") == ["RESULT 42"]
        assert await node_call(p.address.port, "sayHello", "str:\U0001f600") == [
            "RESULT " + json.dumps("Hello \U0001f600", ensure_ascii=False)
        ]
        value = {"n": 2**40, "list": [1, "x"], "map": {"k": "v"}}
        lines = await node_call(p.address.port, "echo", "json:" + json.dumps(value))
        assert json.loads(lines[0].removeprefix("RESULT ")) == value
        (line,) = await node_call(p.address.port, "fail", "str:oops")
        assert line.startswith("ERROR ") and "boom: oops" in line
        async with meshed(p.address.port) as (out, _):
            assert await node_call(out.port, "sayHello", "str:x") == ['RESULT "Hello x"']
    assert provider.callers[-1] == "shop"  # as the consumer's sidecar vouched


async def test_sdk_consumer_and_provider() -> None:
    hub = MemoryHub()
    async with (
        sdk_mesh("prov", hub) as prov,
        prov.serve_dubbo(PyDemo(), interface=IFACE, version=VERSION),
        sdk_mesh("shop", hub) as shop,
    ):
        await check_consumer(shop)
