"""Interop with the real peer, sofa-rpc-node 2.10 (sofa-bolt-node 2.0.1, HESSIAN_VERSION=4.0).

Node client -> SDK provider; SDK consumer -> Node server; Node client -> sidecar ->
sidecar -> Node server; Node client -> sidecar -> SDK provider; SDK consumer in sidecar
mode -> sidecar -> Node server; Bolt v2 with CRC, and a corrupted CRC; the older Hessian
dialect carried untouched. Needs the peers built by scripts/setup.sh (SOFAMESH_PEERS_DIR
or build/peers); fails, never skips, without them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from bolt_support import (
    SERVICE,
    node,
    node_call,
    node_server,
    outbound,
    raw_client,
    raw_server,
    sidecar_config,
    sidecars,
)

import sofamesh
from sofamesh.codecs.bolt import FrameKind, ResponseFrame, ResponseStatus, encode
from sofamesh.codecs.bolt.sofarpc import error_of
from sofamesh.codecs.hessian2 import JavaObject
from sofamesh.config import Address
from sofamesh.endpoint import Endpoint
from sofamesh.protocols.bolt.client import BoltClientConnection, HeartbeatConfig
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.sdk.bolt import RemoteError, current_call
from sofamesh.sdk.mesh import Mesh

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

IFACE, VERSION = SERVICE.rsplit(":", 1)
PERSON = 'obj=com.example.Person:{"name":"ada","age":36}'


@pytest.fixture(scope="module")
def node_port() -> Iterator[int]:
    with node_server("4.0") as port:
        yield port


class PyEcho:
    """The Python twin of server.js's service."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def echo(self, value: Any) -> Any:
        self.seen.append((value, current_call.get().signatures))
        return value

    def add(self, a: int, b: int) -> int:
        return a + b

    def fail(self, message: str) -> None:
        raise ValueError(message)


async def concurrently(*calls: Any) -> list[Any]:
    """Run node peers side by side (each is a process); their outputs in order."""
    results: list[Any] = [None] * len(calls)

    async def run(i: int, call: Any) -> None:
        results[i] = await call

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(run, i, call)
    return results


@asynccontextmanager
async def sdk_mesh(app: str, hub: MemoryHub | None = None) -> AsyncIterator[Mesh]:
    registry = MemoryRegistry(hub or MemoryHub())
    async with sofamesh.open_mesh(
        {"app": app, "registry": "memory://"}, env={}, registry=registry
    ) as m:
        yield m


def node_checks(port: int) -> list[Any]:
    """The issue's list: echo, add, a Java object argument, a server-side error, a heartbeat,
    and a Bolt v2 request with CRC."""
    return [
        node_call(port, "echo", "hello"),
        node_call(port, "add", "int:2", "int:40"),
        node_call(port, "echo", PERSON),
        node_call(port, "fail", "bad"),
        node("heartbeat.js", "127.0.0.1", port),
        node("bolt2_probe.js", "127.0.0.1", port, SERVICE, "echo", "over-v2"),
    ]


def assert_node_saw(results: list[Any], error: str) -> None:
    echo, add, person, fail, (hb_code, hb), (v2_code, v2) = results
    assert echo == 'RESULT "hello"'
    assert add == "RESULT 42"
    assert json.loads(person.removeprefix("RESULT ")) == {"name": "ada", "age": 36}
    assert fail == f"ERROR com.alipay.remoting.rpc.exception.RpcServerException: {error}"
    assert hb_code == 0 and hb.startswith("HEARTBEAT_ACK id=7")
    assert v2_code == 0 and '"crcEnable":true' in v2 and '"appResponse":"over-v2"' in v2


async def test_node_client_calls_an_sdk_provider() -> None:
    provider = PyEcho()
    async with sdk_mesh("py") as mesh, mesh.serve_bolt(provider, IFACE, version=VERSION) as p:
        results = await concurrently(*node_checks(p.address.port))
    assert_node_saw(results, "ValueError: bad")
    person = next(v for v, _ in provider.seen if isinstance(v, JavaObject))
    assert person == JavaObject("com.example.Person", {"name": "ada", "age": 36})


async def test_sdk_consumer_calls_the_node_server(node_port: int) -> None:
    hub = MemoryHub()
    async with MemoryRegistry(hub) as registry, sdk_mesh("py", hub) as mesh:
        await registry.publish(Endpoint(SERVICE, "127.0.0.1", node_port, protocol="bolt"))
        echo = mesh.bolt_consumer(IFACE, VERSION, methods={"add": ["int", "int"]})
        assert await echo.add(2, 40) == 42
        assert await echo.echo("hi") == "hi"
        person = JavaObject("com.example.Person", {"name": "ada", "age": 36})
        assert await echo.echo(person) == {"name": "ada", "age": 36}  # JS keeps no class
        args = await echo.call("echoArgs", [1, 2], ["a"], b"\x00\xff", 1.5, types=[
            "[I", "[Ljava.lang.String;", "[B", "double",
        ])  # fmt: skip
        assert args == [[1, 2], ["a"], b"\x00\xff", 1.5]
        with pytest.raises(RemoteError) as raised:
            await echo.fail("bad")
        assert raised.value.message == "Error: bad" and raised.value.code == 2
    await heartbeat_against(node_port)


async def heartbeat_against(port: int) -> None:
    """Our client's keep-alive, answered by sofa-bolt-node."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    hb = HeartbeatConfig(interval=0.02, timeout=2.0, max_missed=1)
    conn = BoltClientConnection(stream, f"node:{port}", heartbeats=hb)
    async with anyio.create_task_group() as tg:
        await tg.start(conn.run)
        for _ in range(3):
            await conn.wait_heartbeat_acked()
        assert not conn.closed and conn.statistics().heartbeats_missed == 0
        await conn.aclose()


@asynccontextmanager
async def meshed_to(
    upstream: int, hessian_services: list[str] | None = None
) -> AsyncIterator[Address]:
    prov = sidecar_config(
        "node-app", inbound=[{"protocol": "bolt", "listen": "127.0.0.1:0",
                              "upstream": f"127.0.0.1:{upstream}",
                              "services": hessian_services or [SERVICE]}],
    )  # fmt: skip
    shop = sidecar_config("shop", outbound=[{"protocol": "bolt", "listen": "127.0.0.1:0"}])
    async with sidecars(prov, shop) as (_, cons):
        yield outbound(cons)


async def test_two_node_apps_meshed_through_two_sidecars(node_port: int) -> None:
    async with meshed_to(node_port) as out:
        results = await concurrently(*node_checks(out.port))
        assert_node_saw(results, "Error: bad")
        missing = await node_call(out.port, "echo", "x", service="com.example.Nobody:1.0")
    assert missing == (
        "ERROR com.alipay.remoting.rpc.exception.RpcServerException: sofamesh: no healthy"
        " endpoint for service com.example.Nobody:1.0: no endpoints registered"
    )


async def test_node_client_through_a_sidecar_to_an_sdk_provider() -> None:
    async with (
        sdk_mesh("py") as mesh,
        mesh.serve_bolt(PyEcho(), IFACE, version=VERSION) as p,
        meshed_to(p.address.port) as out,
    ):
        results = await concurrently(*node_checks(out.port))
    assert_node_saw(results, "ValueError: bad")


async def test_sdk_consumer_in_sidecar_mode_to_the_node_server(node_port: int) -> None:
    shop = sidecar_config(
        "shop", admin="127.0.0.1:0", outbound=[{"protocol": "bolt", "listen": "127.0.0.1:0"}]
    )
    prov = sidecar_config(
        "node-app", inbound=[{"protocol": "bolt", "listen": "127.0.0.1:0",
                              "upstream": f"127.0.0.1:{node_port}", "services": [SERVICE]}],
    )  # fmt: skip
    async with sidecars(prov, shop) as (_, car):
        cfg = {"app": "shop", "mode": "sidecar", "sidecar": str(car.bound["admin"])}
        async with sofamesh.open_mesh(cfg, env={}) as mesh:
            echo = mesh.bolt_consumer(IFACE, VERSION, methods={"add": ["int", "int"]})
            assert await echo.add(2, 40) == 42
            with pytest.raises(RemoteError, match="Error: bad"):
                await echo.fail("bad")


async def test_bolt_v2_crc_from_the_probe_and_a_corrupted_crc(node_port: int) -> None:
    async with raw_server() as (port, accepted), anyio.create_task_group() as tg:
        tg.start_soon(node, "bolt2_probe.js", "127.0.0.1", port, SERVICE, "echo", "crc")
        frame = await (await accepted.receive()).next_frame()  # capture the probe's frame
        tg.cancel_scope.cancel()
    assert frame is not None and frame.has_crc
    good = encode(frame)
    bad = bytearray(good)
    bad[-10] ^= 0x01
    async with meshed_to(node_port) as out, raw_client(out.port) as client:
        await client.send(good)
        answered = await client.next_frame()
        assert isinstance(answered, ResponseFrame) and answered.has_crc
        assert answered.status == ResponseStatus.SUCCESS
        await client.send(bytes(bad))
        refused = await client.next_frame()
        assert isinstance(refused, ResponseFrame) and refused.kind is FrameKind.RESPONSE
        assert refused.status == ResponseStatus.CODEC_EXCEPTION
        assert "CRC32 mismatch" in error_of(refused.body)[0]
        assert await client.closed()


async def test_the_older_hessian_dialect_passes_through_untouched() -> None:
    with node_server("3.0") as h3_port:
        async with meshed_to(h3_port) as out:
            echo, add, missing = await concurrently(
                node_call(out.port, "echo", "old dialect", hessian="3.0"),
                node_call(out.port, "add", "int:1", "int:2", hessian="3.0"),
                node_call(out.port, "echo", "x", service="com.example.Nobody:1.0", hessian="3.0"),
            )
    assert (echo, add) == ('RESULT "old dialect"', "RESULT 3")
    assert missing.startswith(
        "ERROR com.alipay.remoting.rpc.exception.RpcServerException: sofamesh:"
    )
