"""Zero trust between real sidecar processes: mutual TLS, and the caller is who its cert says.

Two sidecar processes and a plain app. The provider's inbound listener takes
mTLS (`strict`, or `permissive` beside plaintext on the same port); its auth
rule lets only the app `shop` in. Real peers check what we serve: `openssl
s_client` verifies the provider's certificate chain and presents a client
one, and `curl --cert` calls the listener with the certificate of one app
while declaring another in `x-sofamesh-caller`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from tests.security.pki import DOMAIN, issue_files

from sofamesh.demo.procs import Procs
from sofamesh.security.ca import CertificateAuthority
from sofamesh.security.identity import IdentityFiles

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
ONLY_SHOP = {"auth": {"inbound": {"rules": [{"service": ORDERS, "allow": ["app:shop"]}]}}}


def tls(files: IdentityFiles, mode: str) -> dict[str, str]:
    return {"mode": mode, "cert": files.cert, "key": files.key, "trust_bundle": files.trust_bundle}


def provider(tmp: Path, app_port: int, files: IdentityFiles, mode: str) -> dict[str, Any]:
    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "inbound": [
            {
                "protocol": "http",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{app_port}",
                "services": [ORDERS],
            }
        ],
        "tls": tls(files, mode),
        "rules": ONLY_SHOP,
    }


def consumer(tmp: Path, files: IdentityFiles) -> dict[str, Any]:
    return {
        "app": "shop",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "tls": tls(files, "permissive"),
    }


async def curl(address: str, *args: str, caller: str = "shop") -> tuple[int, str]:
    """curl to the provider's listener; (HTTP status or 0 on a failed connection, body)."""
    argv = [
        "curl", "-sS", "-k", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
        "-H", f"host: {ORDERS}", "-H", f"x-sofamesh-caller: {caller}", *args,
    ]  # fmt: skip
    done = await anyio.run_process([*argv, f"{address}/orders"], check=False)
    out = done.stdout.decode()
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def cert_args(files: IdentityFiles) -> list[str]:
    return ["--cert", files.cert, "--key", files.key]


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(DOMAIN)


async def test_strict_the_verified_caller_decides_and_plaintext_is_refused(
    ca: CertificateAuthority, tmp_path: Path, anyio_backend: str
) -> None:
    ids = {app: issue_files(ca, tmp_path / app, app) for app in ("orders", "shop", "web")}
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("orders-1")
        prov = await procs.sidecar(
            "orders", provider(tmp_path, app["port"], ids["orders"], "strict")
        )
        cons = await procs.sidecar("shop", consumer(tmp_path, ids["shop"]))
        inbound = f"https://{prov['inbound[0]']}"
        # Through the caller's sidecar: mTLS between the sidecars, the app sees "shop".
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://{cons['outbound[0]']}/orders", headers={"host": ORDERS})
        assert r.status_code == 200, r.text
        assert r.json()["caller"] == "shop"
        # web's certificate declaring shop: the declaration is ignored, web is denied.
        code, body = await curl(inbound, *cert_args(ids["web"]))
        assert code == 403, body
        assert "caller 'spiffe://mesh.test/ws/prod/app/web' may not call" in body
        # shop's certificate passes, and the app hears the verified name.
        code, body = await curl(inbound, *cert_args(ids["shop"]), caller="web")
        assert code == 200 and json.loads(body)["caller"] == "shop"
        # Plaintext declaring shop: refused before HTTP, with a line naming the peer.
        code, _ = await curl(f"http://{prov['inbound[0]']}")
        assert code == 0
        log = (tmp_path / "sidecar-orders.log").read_text()
        assert "refused a plaintext connection from 127.0.0.1:" in log
        assert "mTLS is strict here" in log


async def test_openssl_verifies_the_provider_and_is_verified(
    ca: CertificateAuthority, tmp_path: Path, anyio_backend: str
) -> None:
    ids = {app: issue_files(ca, tmp_path / app, app) for app in ("orders", "shop")}
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("orders-1")
        prov = await procs.sidecar(
            "orders", provider(tmp_path, app["port"], ids["orders"], "strict")
        )
        shop = ids["shop"]
        request = f"GET /orders HTTP/1.1\r\nhost: {ORDERS}\r\nconnection: close\r\n\r\n"
        done = await anyio.run_process(
            [
                "openssl",
                "s_client",
                "-connect",
                prov["inbound[0]"],
                "-verify_return_error",
                "-CAfile",
                shop.trust_bundle,
                "-cert",
                shop.cert,
                "-key",
                shop.key,
                "-alpn",
                "http/1.1",
                "-ign_eof",
            ],
            input=request.encode(),
            check=False,
        )
        # (its exit status says the server closed without close_notify, as a proxy may)
        out = done.stdout.decode()
        assert "Verify return code: 0 (ok)" in out, out + done.stderr.decode()
        assert "ALPN protocol: http/1.1" in out
        assert '"caller": "shop"' in out  # the request went through, as the verified shop


async def test_permissive_takes_curl_with_a_cert_and_plaintext_on_one_port(
    ca: CertificateAuthority, tmp_path: Path, anyio_backend: str
) -> None:
    ids = {app: issue_files(ca, tmp_path / app, app) for app in ("orders", "shop")}
    rogue = CertificateAuthority.create(DOMAIN)
    stranger = issue_files(rogue, tmp_path / "stranger", "shop")
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("orders-1")
        config = provider(tmp_path, app["port"], ids["orders"], "permissive")
        prov = await procs.sidecar("orders", config)
        address = prov["inbound[0]"]
        code, body = await curl(f"https://{address}", *cert_args(ids["shop"]), caller="web")
        assert code == 200 and json.loads(body)["caller"] == "shop"
        code, body = await curl(f"http://{address}")  # plaintext: the declared caller, as before
        assert code == 200 and json.loads(body)["caller"] == "shop"
        # A certificate for "shop" from a CA we do not trust: refused at the handshake.
        code, _ = await curl(f"https://{address}", *cert_args(stranger))
        assert code == 0
        log = (tmp_path / "sidecar-orders.log").read_text()
        assert "refused mTLS from 127.0.0.1:" in log
        assert "certificate verify failed: unable to get local issuer certificate" in log
