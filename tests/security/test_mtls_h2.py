"""Plain HTTP over h2 between two sidecars on mutual TLS (ALPN h2): the verified caller again."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from tests.security.meshes import ORDERS, identities, sidecar, tls_of
from tests.security.pki import DOMAIN

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.protocols.h2.http import H2HttpHandler
from sofamesh.protocols.h2.server import H2Server
from sofamesh.security.ca import CertificateAuthority
from sofamesh.security.identity import IdentityFiles

pytestmark = pytest.mark.anyio


def client_context(files: IdentityFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # SPIFFE certificates name no host
    ctx.load_verify_locations(files.trust_bundle)
    ctx.load_cert_chain(files.cert, files.key)
    return ctx


async def caller_of(req: HttpRequest) -> HttpResponse:
    caller = dict(req.headers).get(b"x-sofamesh-caller", b"").decode()
    return HttpResponse(200, [], json.dumps({"caller": caller}).encode())


@asynccontextmanager
async def h2c_app() -> AsyncIterator[int]:
    """An app speaking h2c (the provider's sidecar calls it over HTTP/2); yields its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(H2Server(H2HttpHandler(caller_of, 1 << 20)).serve, listener)
        yield port
        tg.cancel_scope.cancel()


async def test_h2_between_two_sidecars_carries_the_verified_caller(tmp_path: Path) -> None:
    ids = identities(CertificateAuthority.create(DOMAIN), tmp_path, "orders", "shop")
    registry = f"file://{tmp_path}/reg?poll=0.05"
    async with h2c_app() as app:
        provider = {
            "app": "orders",
            "registry": registry,
            "inbound": [{"protocol": "h2", "listen": "127.0.0.1:0",
                         "upstream": f"127.0.0.1:{app}", "services": [ORDERS]}],
            "tls": tls_of(ids["orders"], "strict"),
        }  # fmt: skip
        consumer = {
            "app": "shop",
            "registry": registry,
            "outbound": [{"protocol": "h2", "listen": "127.0.0.1:0"}],
            "tls": tls_of(ids["shop"], "strict"),
        }
        async with (
            sidecar(provider) as prov,
            sidecar(consumer) as shop,
            httpx.AsyncClient() as client,
        ):
            out = shop.bound["outbound[0]"]
            headers = {"host": ORDERS, "x-sofamesh-caller": "web"}
            r = await client.get(f"http://{out}/", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json() == {"caller": "shop"}
            assert prov.runtime.stats.counters["tls.handshakes"] == 1
            # Straight to the provider over HTTP/2 with shop's certificate, declaring "web".
            async with httpx.AsyncClient(http2=True, verify=client_context(ids["shop"])) as h2:
                r = await h2.get(f"https://{prov.bound['inbound[0]']}/", headers=headers)
            assert r.http_version == "HTTP/2"
            assert r.status_code == 200 and r.json() == {"caller": "shop"}
