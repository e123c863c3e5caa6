"""mTLS on the hops with an SDK app at one end or both: sidecar -> SDK, SDK -> sidecar, and
SDK -> SDK over Bolt. Each provider is strict, so a call that arrives went over mTLS, and
each reports the caller the mesh verified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.security.meshes import (
    ORDERS,
    app_server,
    caller_config,
    identities,
    outbound,
    provider_config,
    sidecar,
    tls_of,
)
from tests.security.pki import DOMAIN

import sofamesh
from sofamesh.sdk.bolt import current_call
from sofamesh.security.ca import CertificateAuthority
from sofamesh.security.identity import IdentityFiles

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(DOMAIN)


def sdk_config(tmp: Path, app: str, files: IdentityFiles, mode: str) -> dict[str, Any]:
    return {"app": app, "registry": f"file://{tmp}/reg?poll=0.05", "tls": tls_of(files, mode)}


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    caller = dict(scope["headers"]).get(b"x-sofamesh-caller", b"").decode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps({"caller": caller}).encode()})


async def test_a_sidecar_calls_an_sdk_provider_over_mtls(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    ids = identities(ca, tmp_path, "orders", "shop")
    async with (
        sofamesh.open_mesh(sdk_config(tmp_path, "orders", ids["orders"], "strict"), env={}) as m,
        m.serve_asgi(asgi_app, [ORDERS], lifespan=False),
        sidecar(caller_config(tmp_path, "shop", ids["shop"], "strict")) as cons,
        httpx.AsyncClient() as client,
    ):
        r = await client.get(
            f"http://{outbound(cons)}/", headers={"host": ORDERS, "x-sofamesh-caller": "web"}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"caller": "shop"}
        assert m.runtime.stats.counters["tls.handshakes"] >= 1


async def test_an_sdk_app_calls_a_strict_sidecar_over_mtls(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    ids = identities(ca, tmp_path, "orders", "shop")
    async with (
        app_server() as app,
        sidecar(provider_config(tmp_path, ids["orders"], "strict", app)),
        sofamesh.open_mesh(sdk_config(tmp_path, "shop", ids["shop"], "permissive"), env={}) as m,
    ):
        resp = await m.request(ORDERS, "GET", "/", headers={"x-sofamesh-caller": "web"})
        assert resp.status == 200, resp.body
        assert json.loads(resp.body) == {"caller": "shop"}
        assert m.runtime.stats.counters["tls.client_handshakes"] >= 1


class WhoAmI:
    def whoami(self) -> str:
        return current_call.get().caller


async def test_sdk_to_sdk_over_bolt_with_mtls(ca: CertificateAuthority, tmp_path: Path) -> None:
    ids = identities(ca, tmp_path, "orders", "shop")
    iface = "com.example.WhoAmI"
    async with (
        sofamesh.open_mesh(sdk_config(tmp_path, "orders", ids["orders"], "strict"), env={}) as p,
        p.serve_bolt(WhoAmI(), iface),
        sofamesh.open_mesh(sdk_config(tmp_path, "shop", ids["shop"], "strict"), env={}) as c,
    ):
        assert await c.bolt_consumer(iface).whoami() == "shop"
        assert p.runtime.stats.counters["tls.handshakes"] >= 1
