"""What Envoy 1.40's dubbo_proxy does not survive: the upstream dropping the connection
mid-request and the client then closing (it aborts). Every order of upstream drop,
client close and timeout: the affected call gets an error status while its client is
there to read it, and the sidecar goes on serving other connections."""

from __future__ import annotations

import anyio
import pytest
from dubbo_support import (
    SERVICE,
    RawPeer,
    raw_client,
    raw_server,
    request,
    sidecar_config,
    sidecars,
    value_of,
)

from sofamesh.codecs import dubbo

pytestmark = pytest.mark.anyio

ORDERS = [
    ("upstream_drop", "client_close"),
    ("client_close", "upstream_drop"),
    ("timeout", "upstream_drop", "client_close"),
    ("timeout", "client_close", "upstream_drop"),
    ("upstream_drop", "timeout", "client_close"),
]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_every_order_of_drop_close_and_timeout(order: tuple[str, ...]) -> None:
    async with raw_server() as (up_port, accepted):
        cfg = sidecar_config(
            "prov", inbound=[{"protocol": "dubbo", "listen": "127.0.0.1:0",
                              "upstream": f"127.0.0.1:{up_port}", "services": [SERVICE]}],
        )  # fmt: skip
        async with sidecars(cfg) as (car,):
            port = car.bound["inbound[0]"].port
            client = RawPeer(await anyio.connect_tcp("127.0.0.1", port))
            timeout = "100" if "timeout" in order else "60000"
            await client.send(request(1, "wait", "", timeout=timeout))
            upstream = await accepted.receive()
            assert await upstream.next_frame() is not None  # the call is in flight
            await _play(order, client, upstream)
            async with raw_client(port) as again:  # other connections are still served
                await again.send(request(2, "echo", "Ljava/lang/String;", "x"))
                fresh = await accepted.receive()
                call = await fresh.next_frame()
                assert isinstance(call, dubbo.RequestFrame)
                await fresh.send(dubbo.reply(call, dubbo.Status.OK, dubbo.encode_response("x")))
                assert value_of(await again.answer()) == "x"
            await client.stream.aclose()


async def _play(order: tuple[str, ...], client: RawPeer, upstream: RawPeer) -> None:
    answered = closed = False
    for step in order:
        if step == "upstream_drop":
            await upstream.stream.aclose()
            if not answered and not closed:
                reset = await client.answer()
                assert reset.status == dubbo.Status.SERVER_ERROR
                assert "sofamesh(upstream_reset)" in dubbo.error_message(reset.body)
                answered = True
        elif step == "client_close":
            await client.stream.aclose()
            closed = True
        elif not answered:  # the timeout
            late = await client.answer()
            assert late.status == dubbo.Status.SERVER_TIMEOUT
            answered = True
