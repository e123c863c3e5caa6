"""HTTP/1.1 between two sidecars over mutual TLS: the caller is who its certificate says."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.security.meshes import (
    ORDERS,
    app_server,
    caller_config,
    identities,
    inbound,
    outbound,
    provider_config,
    sidecar,
)
from tests.security.pki import DOMAIN

from sofamesh.security.ca import CertificateAuthority

pytestmark = pytest.mark.anyio

ONLY_SHOP = {"auth": {"inbound": {"rules": [{"service": ORDERS, "allow": ["app:shop"]}]}}}


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(DOMAIN)


async def test_a_call_through_two_sidecars_carries_the_verified_caller(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    ids = identities(ca, tmp_path, "orders", "shop")
    async with (
        app_server() as app,
        sidecar(provider_config(tmp_path, ids["orders"], "strict", app, ONLY_SHOP)) as prov,
        sidecar(caller_config(tmp_path, "shop", ids["shop"], "permissive")) as cons,
        httpx.AsyncClient() as client,
    ):
        out = outbound(cons)
        r = await client.get(f"http://{out}/x", headers={"host": ORDERS})
        assert r.status_code == 200, r.text
        assert r.json() == {"caller": "shop"}
        stats = prov.runtime.stats.counters
        assert stats["tls.handshakes"] >= 1
        assert cons.runtime.stats.counters["tls.client_handshakes"] >= 1
        # plaintext to the strict listener: refused before HTTP
        with pytest.raises(httpx.HTTPError):
            await client.get(f"http://{inbound(prov)}/x", headers={"host": ORDERS})
        assert prov.runtime.stats.counters["tls.plaintext_refused"] == 1
