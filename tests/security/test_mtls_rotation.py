"""Rotation under a constant load: renewed certificates and a CA rotation drop no call.

Two sidecars with mutual TLS and callers that never stop. The files are
replaced in place, as cert-manager or a SPIRE helper would: first both
certificates renewed, then a CA rotation in three steps (both bundles carry
the old and the new CA; the certificates come from the new CA; the bundles
drop the old one). Open connections finish on what they started with, and
every new connection after a step presents the certificate of that step.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.streams.tls import TLSAttribute
from cryptography import x509
from tests.security.meshes import (
    ORDERS,
    app_server,
    caller_config,
    inbound,
    outbound,
    provider_config,
    sidecar,
)
from tests.security.pki import DOMAIN, issue_files

from sofamesh.security.ca import CertificateAuthority, cert_pem
from sofamesh.security.identity import IdentityFiles
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio
WORKERS = 6
CALLS_PER_STEP = 60


class Load:
    """Callers that never stop; `wait_calls(n)` returns once `n` more have succeeded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failed: list[str] = []
        self._target = 0
        self._reached = anyio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient() as client:
            while True:
                r = await client.get(self.url, headers={"host": ORDERS})
                if r.status_code == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"{r.status_code} {r.text}")
                if self.ok >= self._target:
                    self._reached.set()

    async def wait_calls(self, n: int) -> None:
        self._target, self._reached = self.ok + n, anyio.Event()
        with anyio.fail_after(30):
            await self._reached.wait()


async def served_certificate(
    car: Sidecar, trust: IdentityFiles, client: IdentityFiles
) -> x509.Certificate:
    """The certificate a new connection to `car`'s inbound listener is given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(trust.trust_bundle)
    ctx.load_cert_chain(client.cert, client.key)
    address = inbound(car)
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(
            address.host, address.port, ssl_context=ctx, tls_standard_compatible=False
        ) as tls:
            der = tls.extra(TLSAttribute.peer_certificate_binary)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def reload(*cars: Sidecar) -> None:
    for car in cars:
        assert car.runtime.tls is not None
        car.runtime.tls.contexts.source.check_now()


async def test_renewal_and_ca_rotation_under_load_drop_no_call(tmp_path: Path) -> None:
    old, new = CertificateAuthority.create(DOMAIN), CertificateAuthority.create(DOMAIN)
    both = cert_pem(old.cert) + cert_pem(new.cert)
    shop = issue_files(old, tmp_path / "shop", "shop")
    orders = issue_files(old, tmp_path / "orders", "orders")
    async with (
        app_server() as app,
        sidecar(provider_config(tmp_path, orders, "strict", app)) as prov,
        sidecar(caller_config(tmp_path, "shop", shop, "strict")) as cons,
        anyio.create_task_group() as tg,
    ):
        load = Load(f"http://{outbound(cons)}/")
        for _ in range(WORKERS):
            tg.start_soon(load.run)
        await load.wait_calls(CALLS_PER_STEP)
        steps = [
            (old, None),  # renewal: new keys and certificates from the same CA
            (old, both),  # CA rotation 1: both bundles trust the old and the new CA
            (new, both),  # 2: certificates from the new CA
            (new, cert_pem(new.cert)),  # 3: the old CA is no longer trusted
        ]
        for issuer, bundle in steps:
            before = (await served_certificate(prov, shop, shop)).serial_number
            shop = issue_files(issuer, tmp_path / "shop", "shop", bundle=bundle)
            orders = issue_files(issuer, tmp_path / "orders", "orders", bundle=bundle)
            reload(prov, cons)
            served = await served_certificate(prov, shop, shop)
            assert served.serial_number != before
            assert served.issuer == issuer.cert.subject
            served.verify_directly_issued_by(issuer.cert)
            await load.wait_calls(CALLS_PER_STEP)
        tg.cancel_scope.cancel()
    assert load.failed == []
    assert load.ok >= 5 * CALLS_PER_STEP
    assert prov.runtime.tls is not None and prov.runtime.tls.contexts.source.reloads == 4
