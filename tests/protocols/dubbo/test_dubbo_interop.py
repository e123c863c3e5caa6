"""Dubbo through sidecars against the real peers (sofa-rpc-node + dubbo-remoting, started
here): Node consumer -> sidecar -> sidecar -> Node provider, values both ways, the
provider's exception message, a slow method hitting the mesh's timeout."""

from __future__ import annotations

import json

import pytest
from dubbo_support import meshed, node_call, node_provider, raw_client, request, value_of

from sofamesh.codecs import dubbo

pytestmark = pytest.mark.anyio


async def test_node_consumer_through_two_sidecars_to_node_provider() -> None:
    with node_provider() as port:
        async with meshed(port) as (out, _):
            assert await node_call(out.port, "add", "int:2", "int:40") == ["RESULT 42"]
            assert await node_call(out.port, "sayHello", "str:w\U0001f600rld") == [
                "RESULT " + json.dumps("Hello w\U0001f600rld", ensure_ascii=False)
            ]
            value = {"n": 2**40, "list": [1, "x"], "map": {"k": "v"}}
            lines = await node_call(out.port, "echo", "json:" + json.dumps(value))
            assert json.loads(lines[0].removeprefix("RESULT ")) == value
            assert await node_call(out.port, "add", "int:1", "int:2", calls=3) == ["RESULT 3"] * 3


async def test_the_providers_exception_message_arrives() -> None:
    with node_provider() as port:
        async with meshed(port) as (out, _):
            (line,) = await node_call(out.port, "fail", "str:oops")
            assert line.startswith("ERROR ") and "boom: oops" in line


async def test_a_slow_method_hits_the_mesh_timeout() -> None:
    with node_provider() as port:
        async with meshed(port, policy={"timeout": 0.3}) as (out, _):
            (line,) = await node_call(out.port, "sleep", "int:3000")
            assert line.startswith("ERROR ") and "sofamesh(timeout)" in line


async def test_a_raw_consumer_sees_exact_values_and_statuses() -> None:
    with node_provider() as port:
        async with meshed(port) as (out, _), raw_client(out.port) as client:
            await client.send(request(2**63 + 5, "sayHello", "Ljava/lang/String;", "\U0001f600"))
            got = await client.answer()
            assert got.request_id == 2**63 + 5  # the caller's id, whatever went upstream
            assert value_of(got) == "Hello \U0001f600"
            await client.send(request(6, "fail", "Ljava/lang/String;", "x"))
            failed = await client.answer()  # this provider answers SERVER_ERROR + message
            assert (failed.request_id, failed.status) == (6, dubbo.Status.SERVER_ERROR)
            assert dubbo.error_message(failed.body) == "boom: x"
            await client.send(dubbo.heartbeat(7))  # answered by the sidecar itself
            beat = await client.answer()
            assert beat.event and beat.request_id == 7 and beat.status == dubbo.Status.OK
