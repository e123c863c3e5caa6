"""The Bolt peek bomb against real sidecar listeners: refused at once, others served.

A legal body of many class definitions before its `SofaRequest`, sent without a method
header, made each hop decode it whole on its event loop (seconds of CPU). Through a
consumer sidecar and a provider sidecar, the bomb must now be refused with a
CODEC_EXCEPTION in a few ms while a well-behaved client on another connection, whose
request is sent right behind it, gets its answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from tests.protocols.bolt.bolt_support import (
    outbound,
    raw_client,
    sidecar_config,
    sidecars,
)

import sofamesh
from sofamesh.codecs.bolt import ResponseFrame, ResponseStatus, encode, request
from sofamesh.codecs.bolt.sofarpc import SofaRequest, decode_response, encode_request, error_of
from sofamesh.config import Address
from sofamesh.registry.memory import MemoryHub, MemoryRegistry

pytestmark = pytest.mark.anyio

SERVICE = "com.example.Bombed:1.0"
BOUND = 0.5  # seconds for both answers; decoding this body whole takes about 1.5 s per hop


class Echo:
    def echo(self, value: str) -> str:
        return value


def call(rid: int, *, definitions: int = 0) -> bytes:
    """A request as sofa-rpc-node writes it (no method header), after `definitions`
    legal but useless class definitions."""
    req = SofaRequest("echo", ["java.lang.String"], SERVICE, None, {})
    body = b"C\x01a\x91\x01b" * definitions + encode_request(req, ["hi"])
    return encode(request(rid, body, headers={"service": SERVICE}))


@asynccontextmanager
async def meshed() -> AsyncIterator[Address]:
    """consumer sidecar -> provider sidecar -> an Echo app; yields the consumer's outbound."""
    iface, version = SERVICE.rsplit(":", 1)
    async with (
        sofamesh.open_mesh(
            {"app": "app", "registry": "memory://"}, env={}, registry=MemoryRegistry(MemoryHub())
        ) as m,
        m.serve_bolt(Echo(), iface, version=version) as served,
    ):
        prov = sidecar_config(
            "prov", inbound=[{"protocol": "bolt", "listen": "127.0.0.1:0",
                              "upstream": str(served.address), "services": [SERVICE]}],
        )  # fmt: skip
        cons = sidecar_config("shop", outbound=[{"protocol": "bolt", "listen": "127.0.0.1:0"}])
        async with sidecars(prov, cons) as (_, shop):
            yield outbound(shop)


async def test_a_class_definition_bomb_is_refused_while_others_are_served() -> None:
    bomb = call(1, definitions=300_000)
    async with meshed() as out, raw_client(out.port) as attacker, raw_client(out.port) as other:
        await other.send(call(9))  # warm: the path is up before the clock starts
        assert isinstance(await other.next_frame(), ResponseFrame)
        started = time.perf_counter()
        await attacker.send(bomb)
        await other.send(call(10))
        refused, served = await attacker.next_frame(), await other.next_frame()
        elapsed = time.perf_counter() - started
    assert isinstance(refused, ResponseFrame) and refused.status == ResponseStatus.CODEC_EXCEPTION
    assert "SofaRequest head is unreadable" in error_of(refused.body)[0]
    assert isinstance(served, ResponseFrame) and served.status == ResponseStatus.SUCCESS
    assert decode_response(served.body).appResponse == "hi"
    assert elapsed < BOUND
