"""Plain HTTP over h2c through sidecars (`protocol: h2` listeners), next to HTTP/1.1 on the port.

h2c client -> consumer sidecar (outbound h2) -> provider sidecar (inbound h2) -> h2c app.
The consumer's hop to the provider is HTTP/1.1 (the mesh carries HTTP as HTTP); the
provider's listener sniffs it and its inbound call goes on to the app over h2c.
"""

from __future__ import annotations

import json

import anyio
import anyio.abc
import httpx
import pytest

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import load_config
from sofamesh.protocols.h2.http import H2HttpHandler
from sofamesh.protocols.h2.server import H2Server
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio
SERVICE = "com.example.Web"


async def app(req: HttpRequest) -> HttpResponse:
    headers = dict(req.headers)
    seen = {
        "method": req.method,
        "target": req.target,
        "host": headers.get(b"host", b"").decode(),
        "caller": headers.get(b"x-sofamesh-caller", b"").decode(),
        "body": req.body.decode(),
    }
    return HttpResponse(200, [(b"content-type", b"application/json")], json.dumps(seen).encode())


async def test_h2c_and_http1_requests_reach_an_h2c_app() -> None:
    server = H2Server(H2HttpHandler(app, max_body=1 << 20))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    app_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    inbound = {
        "protocol": "h2",
        "listen": "127.0.0.1:0",
        "upstream": f"127.0.0.1:{app_port}",
        "services": [SERVICE],
    }
    prov = Sidecar(
        load_config({"app": "web", "registry": "memory://", "inbound": [inbound]}, env={})
    )
    out = {"protocol": "h2", "listen": "127.0.0.1:0"}
    cons = Sidecar(load_config({"app": "shop", "registry": "memory://", "outbound": [out]}, env={}))
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        await tg.start(prov.run)
        await tg.start(cons.run)
        base = f"http://{cons.bound['outbound[0]']}"
        target = {"x-sofamesh-service": SERVICE}
        with anyio.fail_after(10):
            async with httpx.AsyncClient(http1=False, http2=True) as h2c:
                r2 = await h2c.post(f"{base}/orders?id=1", content=b"over h2c", headers=target)
            async with httpx.AsyncClient() as h1:
                r1 = await h1.get(f"{base}/status", headers={"host": SERVICE})
        assert r2.http_version == "HTTP/2"
        assert r2.status_code == 200
        assert r2.json() == {
            "method": "POST",
            "target": "/orders?id=1",
            "host": f"{cons.bound['outbound[0]']}",
            "caller": "shop",
            "body": "over h2c",
        }
        assert r1.http_version == "HTTP/1.1"
        assert (r1.status_code, r1.json()["target"], r1.json()["host"]) == (200, "/status", SERVICE)
        prov.stop()
        cons.stop()
        await prov.wait_stopped()
        await cons.wait_stopped()
        tg.cancel_scope.cancel()  # the app server
