"""Each bad certificate is refused at the handshake, with a log line that says why.

A strict provider sidecar, and clients presenting a certificate that is
expired, not yet valid, from a CA we do not trust, or for another trust
domain from a CA we do trust. And the other way round: a caller's sidecar
refuses a provider whose certificate has expired, and the call fails over as
a connect failure (the request never left).
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import anyio
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
from tests.security.pki import DOMAIN, issue_files, now, same_key_other_domain

from sofamesh.security.ca import CertificateAuthority, cert_pem
from sofamesh.security.identity import IdentityFiles

pytestmark = pytest.mark.anyio
DAY = datetime.timedelta(hours=24)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(DOMAIN)


def client_context(files: IdentityFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(files.trust_bundle)
    ctx.load_cert_chain(files.cert, files.key)
    return ctx


async def try_call(host: str, port: int, files: IdentityFiles) -> bool:
    """A TLS connection with `files`' certificate, and one request: did an answer come?"""
    try:
        with anyio.fail_after(10):
            stream = await anyio.connect_tcp(
                host, port, ssl_context=client_context(files), tls_standard_compatible=False
            )
            async with stream:
                await stream.send(f"GET / HTTP/1.1\r\nhost: {ORDERS}\r\n\r\n".encode())
                return (await stream.receive()).startswith(b"HTTP/1.1 ")
    except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
        return False


def bad_files(ca: CertificateAuthority, tmp: Path, case: str) -> IdentityFiles:
    """The client's files for `case`; each trusts `ca`, so only its own certificate is bad."""
    bundle = cert_pem(ca.cert)
    if case == "expired":
        return issue_files(ca, tmp, "shop", at=now() - 2 * DAY, bundle=bundle)
    if case == "not yet valid":
        return issue_files(ca, tmp, "shop", at=now() + DAY, bundle=bundle)
    if case == "wrong CA":
        return issue_files(CertificateAuthority.create(DOMAIN), tmp, "shop", bundle=bundle)
    # Signed by our CA's key, under a CA certificate of another trust domain.
    return issue_files(same_key_other_domain(ca, "elsewhere.test"), tmp, "shop", bundle=bundle)


CASES = {
    "expired": "certificate verify failed: certificate has expired",
    "not yet valid": "certificate verify failed: certificate is not yet valid",
    "wrong CA": "certificate verify failed: unable to get local issuer certificate",
    "wrong trust domain": (
        "spiffe://elsewhere.test/ws/prod/app/shop is outside the trust domain 'mesh.test'"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_client_certificate_is_refused_saying_why(
    ca: CertificateAuthority, tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = identities(ca, tmp_path, "orders", "shop")
    async with (
        app_server() as app,
        sidecar(provider_config(tmp_path, ids["orders"], "strict", app)) as prov,
    ):
        address = inbound(prov)
        assert await try_call(address.host, address.port, ids["shop"])  # the good one passes
        assert not await try_call(address.host, address.port, bad_files(ca, tmp_path / "bad", case))
    refused = [r.getMessage() for r in caplog.records if "refused mTLS from" in r.getMessage()]
    assert len(refused) == 1 and refused[0].endswith(CASES[case]), refused
    assert prov.runtime.stats.counters["tls.handshake_failures"] == 1


async def test_a_caller_refuses_a_provider_whose_certificate_expired(
    ca: CertificateAuthority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shop = issue_files(ca, tmp_path / "shop", "shop")
    orders = issue_files(ca, tmp_path / "orders", "orders", at=now() - 2 * DAY)
    async with (
        app_server() as app,
        sidecar(provider_config(tmp_path, orders, "strict", app)),
        sidecar(caller_config(tmp_path, "shop", shop, "strict")) as cons,
        httpx.AsyncClient() as client,
    ):
        r = await client.get(f"http://{outbound(cons)}/", headers={"host": ORDERS})
    assert r.status_code == 503 and r.headers["x-sofamesh-error"] == "connect_failed"
    assert "certificate verify failed: certificate has expired" in r.text
    assert "mTLS to 127.0.0.1:" in caplog.text
