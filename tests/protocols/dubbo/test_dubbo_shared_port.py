"""Dubbo sniffed on a shared port: an `h2` listener takes HTTP/1.1, HTTP/2 and Dubbo
connections, each told apart by its first bytes, on both sides of the mesh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx
import pytest
from dubbo_support import SERVICE, raw_client, request, sidecar_config, sidecars, value_of

from sofamesh.codecs import dubbo
from sofamesh.codecs.http1 import HttpRequest
from sofamesh.protocols.dubbo.server import DubboConnInfo, DubboServer
from sofamesh.protocols.h2.client import H2Pool
from sofamesh.protocols.h2.http import send_http

pytestmark = pytest.mark.anyio

STRING = "Ljava/lang/String;"


async def echo(frame: dubbo.RequestFrame, _: DubboConnInfo) -> dubbo.ResponseFrame:
    value = dubbo.decode_request(frame.body).args[0]
    return dubbo.reply(frame, dubbo.Status.OK, dubbo.encode_response(f"echo {value}"))


@asynccontextmanager
async def dubbo_app() -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(DubboServer(echo).serve, listener)
        yield port
        tg.cancel_scope.cancel()


async def test_one_port_serves_http1_http2_and_dubbo() -> None:
    async with dubbo_app() as app_port:
        prov = sidecar_config(
            "prov", inbound=[{"protocol": "h2", "listen": "127.0.0.1:0",
                              "upstream": f"127.0.0.1:{app_port}", "services": [SERVICE]}],
        )  # fmt: skip
        cons = sidecar_config("shop", outbound=[{"protocol": "h2", "listen": "127.0.0.1:0"}])
        with anyio.fail_after(20):  # the sidecars drain their sniffed servers too
            async with sidecars(prov, cons) as (_, c), H2Pool() as pool:
                port = c.bound["outbound[0]"].port
                async with raw_client(port) as peer:  # Dubbo: through both shared ports
                    await peer.send(request(5, "echo", STRING, "hi"))
                    answer = await peer.answer()
                    assert (answer.request_id, value_of(answer)) == (5, "echo hi")
                async with httpx.AsyncClient() as client:  # HTTP/1.1: the mesh's own answer
                    r = await client.get(f"http://127.0.0.1:{port}/", headers={"host": "nope"})
                assert (r.status_code, r.headers["x-sofamesh-error"]) == (503, "no_endpoint")
                req = HttpRequest(method="GET", target="/", headers=[(b"host", b"nope")])
                resp = await send_http(pool, "127.0.0.1", port, req, max_body=1024)  # h2c
                assert resp.status == 503
                assert (b"x-sofamesh-error", b"no_endpoint") in resp.headers


async def test_a_bad_dubbo_request_is_refused_and_the_port_serves_on() -> None:
    cons = sidecar_config("shop", outbound=[{"protocol": "h2", "listen": "127.0.0.1:0"}])
    async with sidecars(cons) as (c,):
        port = c.bound["outbound[0]"].port
        async with raw_client(port) as bad:
            await bad.send(b"\xda\xbb\xc2" + b"\x00" * 13)  # a request with no body
            refused = await bad.answer()
            assert refused.status == dubbo.Status.BAD_REQUEST
        async with raw_client(port) as good:
            await good.send(request(9, "echo", STRING, "x"))
            answer = await good.answer()
            assert answer.status == dubbo.Status.SERVICE_NOT_FOUND  # served: no provider
