"""HTTP/1.1 between two sidecars over mutual TLS: the caller is who its certificate says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.abc
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


OTHER = "com.example.Other"
DEFAULT_DENY = {
    "auth": {
        "inbound": {
            "default": "deny",  # the one switch: a service no rule names is closed
            "rules": [{"service": ORDERS, "allow": ["tls:spiffe://mesh.test/ws/prod/app/shop"]}],
        }
    }
}


async def test_default_deny_and_a_tls_rule_match_only_the_verified_id(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    ids = identities(ca, tmp_path, "orders", "shop", "web")
    async with app_server() as app:
        config = provider_config(tmp_path, ids["orders"], "permissive", app, DEFAULT_DENY)
        config["inbound"][0]["services"].append(OTHER)
        await check_default_deny(config, caller_config(tmp_path, "shop", ids["shop"], "strict"))


async def check_default_deny(provider: dict[str, Any], consumer: dict[str, Any]) -> None:
    async with (
        sidecar(provider) as prov,
        sidecar(consumer) as shop,
        httpx.AsyncClient() as client,
    ):
        r = await client.get(f"http://{outbound(shop)}/", headers={"host": ORDERS})
        assert r.status_code == 200, r.text
        # Naming the ID in a header over plaintext (permissive) is a declaration, not an ID.
        spoof = {"host": ORDERS, "x-sofamesh-caller": "spiffe://mesh.test/ws/prod/app/shop"}
        r = await client.get(f"http://{inbound(prov)}/", headers=spoof)
        assert r.status_code == 403, r.text
        # Any other service: the default denies, even the verified shop.
        r = await client.get(f"http://{outbound(shop)}/", headers={"host": OTHER})
        assert r.status_code == 403, r.text
        snapshot = prov.runtime.governance.snapshot()["rules"]["auth"]
        rows = {row["rule"]: row for row in snapshot}
        assert rows["auth.inbound"]["allowed"] == 1 and rows["auth.inbound"]["denied"] == 2
        assert rows["auth.inbound.default"]["denied"] == 1


async def test_a_deadline_on_an_mtls_hop_is_a_timeout_not_a_reset(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """The caller's pool holds the mTLS connection to the deadline as it does a TCP one."""
    ids = identities(ca, tmp_path, "orders", "shop")
    silent = await anyio.create_tcp_listener(local_host="127.0.0.1")  # accepts, never answers
    port = silent.extra(anyio.abc.SocketAttribute.local_port)
    consumer = caller_config(tmp_path, "shop", ids["shop"], "strict")
    consumer["policy"] = {"timeout": 0.3}
    async with (
        silent,
        anyio.create_task_group() as tg,
        sidecar(provider_config(tmp_path, ids["orders"], "strict", port)),
        sidecar(consumer) as shop,
        httpx.AsyncClient() as client,
    ):
        held: list[anyio.abc.SocketStream] = []

        async def hold(stream: anyio.abc.SocketStream) -> None:
            held.append(stream)

        tg.start_soon(silent.serve, hold)
        r = await client.get(f"http://{outbound(shop)}/", headers={"host": ORDERS})
        assert r.status_code == 504 and r.headers["x-sofamesh-error"] == "timeout", r.text
        tg.cancel_scope.cancel()
        for stream in held:
            await stream.aclose()


async def test_a_strict_service_on_a_permissive_sidecar_refuses_plaintext(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    ids = identities(ca, tmp_path, "orders", "shop")
    async with app_server() as app:
        config = provider_config(tmp_path, ids["orders"], "permissive", app)
        config["inbound"][0]["services"].append(OTHER)
        config["tls"]["services"] = {ORDERS: "strict"}
        async with (
            sidecar(config) as prov,
            sidecar(caller_config(tmp_path, "shop", ids["shop"], "strict")) as shop,
            httpx.AsyncClient() as client,
        ):
            direct = f"http://{inbound(prov)}/"
            r = await client.get(direct, headers={"host": ORDERS})
            assert r.status_code == 403 and "over mutual TLS only" in r.text
            assert (await client.get(direct, headers={"host": OTHER})).status_code == 200
            r = await client.get(f"http://{outbound(shop)}/", headers={"host": ORDERS})
            assert r.status_code == 200 and r.json() == {"caller": "shop"}
            published = {ep.service: dict(ep.meta) for ep in prov._published.values()}
            assert published[ORDERS]["mtls"] == "strict"
            assert published[OTHER]["mtls"] == "permissive"
            assert published[ORDERS]["spiffe"] == "spiffe://mesh.test/ws/prod/app/orders"


def test_per_service_modes_need_tls_on(tmp_path: Path) -> None:
    from sofamesh.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="per-service modes need mode permissive or strict"):
        load_config({"app": "a", "tls": {"services": {ORDERS: "strict"}}}, env={})
    with pytest.raises(ConfigError, match=r"tls\.cert: no such file"):
        load_config({"app": "a", "tls": {"mode": "strict", "cert": str(tmp_path / "x")}}, env={})
