"""The grpclib SDK: generated grpclib stubs on `mesh.grpc_channel()`, grpclib handlers served
by `mesh.serve_grpc`, against grpcio peers, in sdk mode and through sidecars in sidecar mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import grpc
import pytest
from grpc_support import Peers, channel
from grpclib.const import Status as GStatus
from grpclib.exceptions import GRPCError

import sofamesh
from sofamesh.config import load_config
from sofamesh.endpoint import Endpoint
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio
ECHO = "sofamesh.test.Echo"


def handlers(peers: Peers, instance: str = "i1") -> Any:
    """grpclib handlers for Echo (its generated `EchoBase`), naming their instance."""
    Msg = peers.echo.Msg

    class Echo(peers.mods["echo_grpc"].EchoBase):  # type: ignore[misc, name-defined]
        async def Unary(self, stream: Any) -> None:
            req = await stream.recv_message()
            if req.code:
                raise GRPCError(GStatus(req.code), req.text)
            caller = stream.metadata.get("x-sofamesh-caller", "")
            await stream.send_message(
                Msg(text=f"{instance}:{req.text}", blob=req.blob, code=len(caller))
            )

        async def ServerStream(self, stream: Any) -> None:
            req = await stream.recv_message()
            for i in range(req.count):
                await stream.send_message(Msg(text=f"{req.text}#{i}"))
                if req.hang:
                    await anyio.sleep_forever()

        async def ClientStream(self, stream: Any) -> None:
            texts = [m.text async for m in stream]
            await stream.send_message(Msg(text="+".join(texts), count=len(texts)))

        async def Bidi(self, stream: Any) -> None:
            async for m in stream:
                await stream.send_message(Msg(text=f"re:{m.text}"))

    return Echo()


async def in_thread(fn: Callable[[], Any]) -> Any:
    with anyio.fail_after(30):
        return await anyio.to_thread.run_sync(fn)


async def exercise(peers: Peers, stub: Any, *prefixes: str) -> None:
    """Every kind of call through a grpclib stub (a unary reply starts with one of `prefixes`)."""
    Msg = peers.echo.Msg
    reply = await stub.Unary(Msg(text="u"), timeout=5)
    assert reply.text in {f"{p}u" for p in prefixes}
    assert [m.text for m in await stub.ServerStream(Msg(text="s", count=3))] == [
        "s#0",
        "s#1",
        "s#2",
    ]
    joined = await stub.ClientStream([Msg(text="a"), Msg(text="b")])
    assert (joined.text, joined.count) == ("a+b", 2)
    async with stub.Bidi.open(timeout=5) as stream:
        for t in ("x", "y"):  # ping-pong: each reply before the next request
            await stream.send_message(Msg(text=t))
            assert (await stream.recv_message()).text == f"re:{t}"
        await stream.end()
        assert await stream.recv_message() is None


async def test_grpclib_stub_to_grpcio_server(peers: Peers, grpcio_server: int) -> None:
    async with sofamesh.open_mesh({"app": "shop", "registry": "memory://"}, env={}) as mesh:
        ep = Endpoint(service=ECHO, host="127.0.0.1", port=grpcio_server, protocol="grpc")
        await mesh.runtime.registry.publish(ep)
        stub = peers.mods["echo_grpc"].EchoStub(mesh.grpc_channel())
        await exercise(peers, stub, "echo:")
        hello = peers.mods["helloworld_grpc"].GreeterStub(mesh.grpc_channel())
        await mesh.runtime.registry.publish(
            Endpoint(
                service="helloworld.Greeter", host="127.0.0.1", port=grpcio_server, protocol="grpc"
            )
        )
        reply = await hello.SayHello(peers.hw.HelloRequest(name="sdk"), timeout=5)
        assert reply.message == "Hello sdk from grpcio"
        with pytest.raises(GRPCError) as exc:
            await stub.Unary(peers.echo.Msg(text="gone", code=5))
        assert (exc.value.status, exc.value.message) == (GStatus.NOT_FOUND, "gone")


async def test_grpcio_client_to_grpclib_provider(peers: Peers) -> None:
    Msg = peers.echo.Msg
    async with (
        sofamesh.open_mesh({"app": "orders", "registry": "memory://"}, env={}) as mesh,
        mesh.serve_grpc([handlers(peers)]) as provider,
    ):
        assert provider.services == (ECHO,)

        def calls() -> tuple[Any, list[str], Any, list[str], grpc.RpcError]:
            with channel(provider.address) as ch:
                stub = peers.echo_stub(ch)
                unary = stub.Unary(Msg(text="u"), timeout=5)
                stream = [m.text for m in stub.ServerStream(Msg(text="s", count=2))]
                joined = stub.ClientStream(iter([Msg(text="a"), Msg(text="b")]))
                bidi = [m.text for m in stub.Bidi(iter([Msg(text="x"), Msg(text="y")]))]
                with pytest.raises(grpc.RpcError) as exc:
                    stub.Unary(Msg(text="denied", code=7), timeout=5)
                return unary, stream, joined, bidi, exc.value

        unary, stream, joined, bidi, err = await in_thread(calls)
        assert unary.text == "i1:u"
        assert stream == ["s#0", "s#1"]
        assert joined.text == "a+b"
        assert bidi == ["re:x", "re:y"]
        assert err.code() is grpc.StatusCode.PERMISSION_DENIED
        assert err.details() == "denied"
        eps = await mesh.runtime.registry.list_services()
        assert ECHO in eps


async def test_sdk_to_sdk_balances_per_call(peers: Peers) -> None:
    async with (
        sofamesh.open_mesh({"app": "orders", "registry": "memory://"}, env={}) as mesh,
        mesh.serve_grpc([handlers(peers, "i1")]),
        mesh.serve_grpc([handlers(peers, "i2")]),
    ):
        stub = peers.mods["echo_grpc"].EchoStub(mesh.grpc_channel())
        seen = set()
        with anyio.fail_after(10):
            while seen != {"i1", "i2"}:
                reply = await stub.Unary(peers.echo.Msg(text="x"), timeout=5)
                seen.add(reply.text.split(":")[0])
                assert reply.code == len("orders")  # the caller's identity travelled
        await exercise(peers, stub, "i1:", "i2:")


async def test_no_endpoint_and_deadline_come_back_as_grpc_errors(peers: Peers) -> None:
    async with (
        sofamesh.open_mesh({"app": "shop", "registry": "memory://"}, env={}) as mesh,
        mesh.serve_grpc([handlers(peers)]),
    ):
        stub = peers.mods["echo_grpc"].EchoStub(mesh.grpc_channel())
        got = []
        with pytest.raises(GRPCError) as exc:
            async with stub.ServerStream.open(timeout=0.5) as stream:
                await stream.send_message(peers.echo.Msg(text="h", count=3, hang=True), end=True)
                async for m in stream:
                    got.append(m.text)
        assert exc.value.status is GStatus.DEADLINE_EXCEEDED
        assert got == ["h#0"]
        lost = peers.mods["helloworld_grpc"].GreeterStub(mesh.grpc_channel())
        with pytest.raises(GRPCError) as exc:
            await lost.SayHello(peers.hw.HelloRequest(name="x"), timeout=5)
        assert exc.value.status is GStatus.UNAVAILABLE
        assert "helloworld.Greeter" in (exc.value.message or "")


@asynccontextmanager
async def sidecar(config: dict[str, Any]) -> AsyncIterator[Sidecar]:
    s = Sidecar(load_config({"registry": "memory://", "admin": "127.0.0.1:0", **config}, env={}))
    async with anyio.create_task_group() as tg:
        await tg.start(s.run)
        yield s
        s.stop()


async def test_sidecar_mode_both_ways(peers: Peers, grpcio_server: int) -> None:
    """SDK consumer (sidecar mode) -> sidecar -> sidecar -> grpcio server, and
    grpcio client -> sidecar -> sidecar -> SDK provider (sidecar mode)."""
    grpc_in = {"protocol": "grpc", "listen": "127.0.0.1:0"}
    out = [
        {"protocol": "http", "listen": "127.0.0.1:0"},
        {"protocol": "grpc", "listen": "127.0.0.1:0"},
    ]
    upstream = {
        **grpc_in,
        "upstream": f"127.0.0.1:{grpcio_server}",
        "services": ["helloworld.Greeter"],
    }
    async with (
        sidecar({"app": "shop", "outbound": out}) as shop,
        sidecar({"app": "greeter", "inbound": [upstream]}),
        # The SDK's sidecar client insists on an outbound http listener (sdk/control.py).
        sidecar(
            {
                "app": "orders",
                "inbound": [grpc_in],
                "outbound": out[:1],
                "local_api": {"services": ["*"]},  # its app may publish any service
            }
        ) as orders,
    ):
        cfg = {"app": "shop", "mode": "sidecar", "sidecar": str(shop.bound["admin"])}
        prov = {"app": "orders", "mode": "sidecar", "sidecar": str(orders.bound["admin"])}
        async with (
            sofamesh.open_mesh(cfg, env={}) as mesh,
            sofamesh.open_mesh(prov, env={}) as orders_mesh,
            orders_mesh.serve_grpc([handlers(peers, "sdk")]),
        ):
            hello = peers.mods["helloworld_grpc"].GreeterStub(mesh.grpc_channel())
            reply = await hello.SayHello(peers.hw.HelloRequest(name="side"), timeout=5)
            assert reply.message == "Hello side from grpcio"
            stub = peers.mods["echo_grpc"].EchoStub(mesh.grpc_channel())
            await exercise(peers, stub, "sdk:")
            outbound = shop.bound["outbound[1]"]

            def plain() -> Any:
                with channel(outbound) as ch:
                    return peers.echo_stub(ch).Unary(peers.echo.Msg(text="io"), timeout=5)

            assert (await in_thread(plain)).text == "sdk:io"
