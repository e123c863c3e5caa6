"""The transparent inbound listener under the data plane's mTLS mode, for real.

Host B runs an HTTP provider on port 8080, a gRPC one on 50051, and a sidecar whose rules
send B's inbound TCP to those ports to its transparent inbound listener; host A runs
callers with no sidecar: a plain HTTP client (from outside the mesh), and HTTP and gRPC
over mutual TLS with a mesh certificate (as a caller's sidecar sends them). In `strict`
the plaintext caller is refused and the mesh callers are served through B's inbound
chain, whose auth rule denies one verified identity; in `permissive` plaintext is
relayed as before and TLS still served.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.intercept.netns import Hosts
from tests.intercept.test_netns_intercept import APPS, _app, _counters, _init, _sidecar, _tls
from tests.security.pki import DOMAIN, issue_files

from sofamesh.demo.procs import Procs
from sofamesh.security.ca import CertificateAuthority
from sofamesh.security.identity import IdentityFiles

pytestmark = pytest.mark.anyio

EVIL = f"spiffe://{DOMAIN}/ws/prod/app/evil"
DENY_EVIL = {"auth": {"inbound": {"rules": [{"service": "orders", "deny": [f"tls:{EVIL}"]}]}}}


def _provider_sidecar(
    tmp: Path, files: IdentityFiles, mode: str, max_app_ports: int
) -> dict[str, Any]:
    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "local_api": {"token_file": str(tmp / "orders.token")},
        "tls": _tls(files, mode),
        "rules": DENY_EVIL,
        "intercept": {
            "outbound": None,
            "inbound": "0.0.0.0:15006",
            "sniff_timeout": 1,
            "max_app_ports": max_app_ports,
        },
    }


async def _start(
    procs: Procs, hosts: Hosts, tmp: Path, mode: str, max_app_ports: int = 64
) -> tuple[Any, dict[str, IdentityFiles]]:
    ca = CertificateAuthority.create(DOMAIN)
    ids = {app: issue_files(ca, tmp / app, app) for app in ("shop", "evil")}
    ids["orders"] = issue_files(ca, tmp / "orders", "orders", dns=("orders",))  # for grpcio
    stranger = CertificateAuthority.create(DOMAIN)  # the same domain, not the mesh's CA
    ids["stranger"] = issue_files(stranger, tmp / "stranger", "shop")
    await procs.start("provider", [*hosts.exec(hosts.b), sys.executable, APPS, "provider", "8080"])
    await procs.start(
        "grpc-provider", [*hosts.exec(hosts.b), sys.executable, APPS, "grpc-provider", "50051"]
    )
    await _init(hosts.b, "--inbound-ports", "8080,50051", "--inbound-port", "15006")
    config = _provider_sidecar(tmp, ids["orders"], mode, max_app_ports)
    return await _sidecar(procs, hosts.b, "sidecar-b", config, procs.backend), ids


async def _mtls_get(hosts: Hosts, files: IdentityFiles) -> Any:
    cert = (files.cert, files.key, files.trust_bundle)
    return await _app(hosts.a, "tls-get", hosts.b_ip, "8080", *cert, "orders")


async def test_strict_refuses_plaintext_and_serves_mesh_callers_through_the_chain(
    hosts: Hosts, tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        b, ids = await _start(procs, hosts, tmp_path, "strict")
        # From outside the mesh, in plaintext: closed before reaching the app.
        got = await _app(hosts.a, "get", f"http://{hosts.b_ip}:8080/direct")
        assert got["status"] == 0, got
        # A mesh caller over mTLS: B's inbound chain hands the app the verified caller.
        got = await _mtls_get(hosts, ids["shop"])
        assert got["status"] == 200, got
        seen = json.loads(got["body"])
        assert seen["path"] == "/mtls" and seen["caller"] == "shop", seen
        # The auth rule denies a verified identity, as on the explicit inbound listener.
        got = await _mtls_get(hosts, ids["evil"])
        assert got["status"] == 403, got
        # gRPC over mTLS (ALPN h2) to the app's gRPC port: the HTTP/2 inbound server.
        shop = ids["shop"]
        grpc_tls = (shop.cert, shop.key, shop.trust_bundle, "orders")
        got = await _app(hosts.a, "grpc-tls-call", f"{hosts.b_ip}:50051", *grpc_tls)
        assert got == {"code": "OK", "body": "hello mesh from shop"}, got
        # A certificate the mesh's CA did not issue finishes no handshake.
        got = await _mtls_get(hosts, ids["stranger"])
        assert got["status"] == 0, got
        counters = await _counters(hosts.b, b["admin"])
        assert counters["intercept.inbound.mesh"] == 3, counters
        assert counters["intercept.inbound.refused"] == 2, counters
        assert counters["tls.plaintext_refused"] == 1, counters
        assert counters["tls.handshake_failures"] == 1, counters
        assert "intercept.inbound.relayed" not in counters, counters
        log = (tmp_path / "sidecar-b.log").read_text()
        assert f"refused a plaintext connection from {hosts.a_ip}:" in log, log


async def test_permissive_relays_plaintext_and_still_serves_mtls_through_the_chain(
    hosts: Hosts, tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        b, ids = await _start(procs, hosts, tmp_path, "permissive")
        got = await _app(hosts.a, "get", f"http://{hosts.b_ip}:8080/direct")
        assert got["status"] == 200 and json.loads(got["body"])["caller"] is None, got
        got = await _mtls_get(hosts, ids["shop"])
        assert got["status"] == 200 and json.loads(got["body"])["caller"] == "shop", got
        got = await _mtls_get(hosts, ids["evil"])
        assert got["status"] == 403, got
        counters = await _counters(hosts.b, b["admin"])
        assert counters["intercept.inbound.relayed"] == 1, counters
        assert counters["intercept.inbound.mesh"] == 2, counters


async def test_app_addresses_past_the_limit_are_refused(
    hosts: Hosts, tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        b, ids = await _start(procs, hosts, tmp_path, "strict", max_app_ports=1)
        got = await _mtls_get(hosts, ids["shop"])
        assert got["status"] == 200, got
        shop = ids["shop"]
        grpc_tls = (shop.cert, shop.key, shop.trust_bundle, "orders")
        got = await _app(hosts.a, "grpc-tls-call", f"{hosts.b_ip}:50051", *grpc_tls)
        assert got["code"] == "UNAVAILABLE", got  # a second app address: closed
        got = await _mtls_get(hosts, ids["shop"])
        assert got["status"] == 200, got  # the first is still served
        counters = await _counters(hosts.b, b["admin"])
        assert counters["intercept.inbound.mesh"] == 2, counters
        assert counters["intercept.inbound.refused"] >= 1, counters  # grpcio may dial again
        log = (tmp_path / "sidecar-b.log").read_text()
        assert f"to {hosts.b_ip}:50051: more than intercept.max_app_ports (1)" in log, log
