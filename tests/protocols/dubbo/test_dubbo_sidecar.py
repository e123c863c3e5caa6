"""Dubbo through sidecars, in this process, against a Python Dubbo app: request ids
re-mapped per upstream connection, arguments byte for byte, mesh attachments kept to the
mesh, failures as Dubbo statuses, governance rules, and oneway calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from dubbo_support import SERVICE, meshed, raw_client, request, sidecar_config, sidecars, value_of

from sofamesh.codecs import dubbo
from sofamesh.protocols.dubbo.server import DubboConnInfo, DubboServer

pytestmark = pytest.mark.anyio


class App:
    """A Dubbo provider written against the codec: echo, wait, attachments, put."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.bodies: list[bytes] = []
        self.put = anyio.Event()

    async def __call__(self, frame: dubbo.RequestFrame, _: DubboConnInfo) -> dubbo.ResponseFrame:
        self.bodies.append(frame.body)
        call = dubbo.decode_request(frame.body)
        value: Any
        if call.method == "wait":
            await self.release.wait()
            value = "released"
        elif call.method == "attachments":
            value = call.attachments
        elif call.method == "put":
            self.put.set()
            value = None
        else:
            value = call.args[0]
        return dubbo.reply(frame, dubbo.Status.OK, dubbo.encode_response(value))


@asynccontextmanager
async def app_server(app: App) -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(DubboServer(app).serve, listener)
        yield port
        tg.cancel_scope.cancel()


STRING = "Ljava/lang/String;"


async def test_ids_are_remapped_and_arguments_arrive_byte_for_byte() -> None:
    app = App()
    async with (
        app_server(app) as port,
        meshed(port) as (out, _),
        raw_client(out.port) as one,
        raw_client(out.port) as two,
    ):
        sent = request(7, "echo", STRING, "from one")
        await one.send(sent)
        await two.send(request(7, "echo", STRING, "from two"))  # the same id
        a, b = await one.answer(), await two.answer()
        assert (a.request_id, value_of(a)) == (7, "from one")
        assert (b.request_id, value_of(b)) == (7, "from two")
        head = dubbo.peek_head(sent[16:])
        assert head is not None
        _, at = dubbo.attachments_of(sent[16:], head)
        assert sent[16 : 16 + at] in [b[:at] for b in app.bodies]  # head and arguments untouched


async def test_mesh_attachments_stay_in_the_mesh() -> None:
    app = App()
    async with app_server(app) as port, meshed(port) as (out, _), raw_client(out.port) as client:
        spoofed = {"x-sofamesh-caller": "admin"}  # an app cannot name its own caller
        await client.send(request(1, "attachments", "", trace="t-1", **spoofed))
        seen = value_of(await client.answer())
        assert seen["trace"] == "t-1" and seen["path"] == "com.example.DemoService"
        mesh = {k: v for k, v in seen.items() if k.startswith("x-sofamesh-")}
        assert mesh == {"x-sofamesh-caller": "shop"}  # the caller, as the consumer sidecar vouched


async def test_mesh_failures_become_dubbo_statuses() -> None:
    app = App()
    async with app_server(app) as port, meshed(port) as (out, _), raw_client(out.port) as client:
        await client.send(request(1, "wait", "", timeout="100"))
        late = await client.answer()
        assert late.status == dubbo.Status.SERVER_TIMEOUT
        assert dubbo.error_message(late.body).startswith("sofamesh(timeout): ")
        app.release.set()
        body = dubbo.encode_request(dubbo.RequestBody(path="com.example.Nobody", method="m"))
        await client.send(dubbo.RequestFrame(2, body))
        missing = await client.answer()
        assert missing.status == dubbo.Status.SERVICE_NOT_FOUND
        assert "com.example.Nobody" in dubbo.error_message(missing.body)
        await client.send(dubbo.RequestFrame(3, b"\xac\xed", serialization=3))
        refused = await client.answer()
        assert refused.status == dubbo.Status.BAD_REQUEST
        assert "only Hessian 2" in dubbo.error_message(refused.body)
        assert (refused.request_id, refused.serialization) == (3, 3)


async def test_oneway_calls_get_no_answer() -> None:
    app = App()
    async with app_server(app) as port, meshed(port) as (out, _), raw_client(out.port) as client:
        raw = bytearray(request(1, "put", ""))
        raw[2] &= ~0x40  # not two-way
        await client.send(bytes(raw), dubbo.heartbeat(2))
        beat = await client.answer()
        assert beat.event and beat.request_id == 2  # and nothing for the oneway call
        await app.put.wait()


async def test_governance_rules_apply_to_dubbo_calls() -> None:
    inbound_rules = {
        "auth": {"inbound": {"rules": [{"name": "callers", "service": SERVICE,
                                        "allow": ["shop"]}]}},
        "rate_limits": [{"name": "echo-qps", "service": SERVICE, "method": "echo", "count": 1}],
    }  # fmt: skip
    outbound_rules = {
        "routes": [{"name": "closed", "service": "com.example.Legacy",
                    "direct_response": {"status": "unavailable", "body": "back at 14:00"}}],
    }  # fmt: skip
    async with app_server(App()) as port:
        prov = sidecar_config(
            "prov", rules=inbound_rules,
            inbound=[{"protocol": "dubbo", "listen": "127.0.0.1:0",
                      "upstream": f"127.0.0.1:{port}", "services": [SERVICE]}],
        )  # fmt: skip
        out = [{"protocol": "dubbo", "listen": "127.0.0.1:0"}]
        shop = sidecar_config("shop", outbound=out, rules=outbound_rules)
        intruder = sidecar_config("intruder", outbound=out)
        async with (
            sidecars(prov, shop, intruder) as (_, shop_car, intruder_car),
            raw_client(shop_car.bound["outbound[0]"].port) as client,
            raw_client(intruder_car.bound["outbound[0]"].port) as stranger,
        ):
            await stranger.send(request(1, "echo", STRING, "x"))
            denied = dubbo.decode_response((await stranger.answer()).body)
            assert denied.is_exception
            assert denied.value.class_name == "org.apache.dubbo.rpc.RpcException"
            assert "sofamesh(unauthorized): " in dubbo.exception_message(denied.value)
            await client.send(*(request(i, "echo", STRING, "x") for i in (2, 3)))
            both = [await client.answer(), await client.answer()]
            bodies = [dubbo.decode_response(a.body) for a in both]
            assert sorted(b.is_exception for b in bodies) == [False, True]  # one over the limit
            (limited,) = [b for b in bodies if b.is_exception]
            assert "sofamesh(rate_limited): " in dubbo.exception_message(limited.value)
            legacy = dubbo.encode_request(dubbo.RequestBody(path="com.example.Legacy", method="m"))
            await client.send(dubbo.RequestFrame(4, legacy))
            closed = await client.answer()
            assert closed.status == dubbo.Status.SERVER_THREADPOOL_EXHAUSTED_ERROR
            assert dubbo.error_message(closed.body) == "sofamesh(unavailable): back at 14:00"
