"""The control plane as the CA: it signs only the identity a data-plane token may have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.control.harness import Api, running_control

from sofamesh.config import ConfigError, load_config
from sofamesh.security.ca import CertificateAuthority, cert_pem, make_csr, new_key, uri_sans
from sofamesh.security.spiffe import SpiffeId

pytestmark = pytest.mark.anyio


def csr_for(trust_domain: str, workspace: str, app: str) -> str:
    csr = make_csr(new_key(), SpiffeId(trust_domain, workspace, app))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def _setup(admin: Api) -> tuple[Api, Api, str]:
    for ws in ("a", "b"):
        await admin.ok("POST", "/api/v1/workspaces", {"name": ws})
    any_app = admin.as_(await admin.token_for("a", "dataplane"))
    body = {"role": "dataplane", "apps": ["web"]}
    web_only = admin.as_((await admin.ok("POST", "/api/v1/workspaces/a/tokens", body))["token"])
    domain = (await any_app.ok("GET", "/api/v1/workspaces/a/ca"))["trust_domain"]
    return any_app, web_only, domain


async def test_a_csr_is_signed_and_verifies_with_openssl(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch, trust_domain="mesh.test") as (cp, admin):
        dp, _web, domain = await _setup(admin)
        assert domain == "mesh.test"
        ca = await dp.ok("GET", "/api/v1/workspaces/a/ca")
        got = await dp.ok(
            "POST", "/api/v1/workspaces/a/certificates", {"csr": csr_for(domain, "a", "web")}
        )
    assert got["spiffe_id"] == "spiffe://mesh.test/ws/a/app/web" and got["bundle"] == ca["bundle"]
    cert = x509.load_pem_x509_certificate(got["cert"].encode())
    assert uri_sans(cert) == [got["spiffe_id"]]
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 24 * 3600 <= life.total_seconds() <= 24 * 3600 + 120  # default life, with the skew
    (tmp_path / "cert.pem").write_text(got["cert"])
    (tmp_path / "bundle.pem").write_text(got["bundle"])
    verify = [
        "openssl",
        "verify",
        "-CAfile",
        str(tmp_path / "bundle.pem"),
        str(tmp_path / "cert.pem"),
    ]
    done = await anyio.run_process(verify, check=False)
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0 and ": OK" in out, out
    # The CA was made on the first start beside the store, its key readable by its owner only.
    assert CertificateAuthority.load(tmp_path / "ca").trust_domain == "mesh.test"
    assert (tmp_path / "ca" / "ca-key.pem").stat().st_mode & 0o077 == 0
    assert cp.ca.trust_domain == "mesh.test"


async def test_a_token_gets_only_its_workspace_and_apps(
    tmp_path: Path, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_control(tmp_path, monkeypatch, cert_life=600) as (_cp, admin):
        dp, web_only, domain = await _setup(admin)
        sign_a = "/api/v1/workspaces/a/certificates"
        # A token of workspace a asking for an identity in workspace b, on a's path: refused.
        status, body = await dp.call("POST", sign_a, {"csr": csr_for(domain, "b", "web")})
        assert status == 403 and "may not have spiffe://" in body["error"]
        # ... and on b's path: b is not its workspace.
        csr_b = {"csr": csr_for(domain, "b", "web")}
        status, _ = await dp.call("POST", "/api/v1/workspaces/b/certificates", csr_b)
        assert status == 404
        # Another trust domain, another app than the token's, garbage, a viewer: refused.
        status, body = await dp.call("POST", sign_a, {"csr": csr_for("evil.test", "a", "web")})
        assert status == 403 and "outside the trust domain" in body["error"]
        status, body = await web_only.call("POST", sign_a, {"csr": csr_for(domain, "a", "pay")})
        assert status == 403 and "not 'pay'" in body["error"]
        status, body = await dp.call("POST", sign_a, {"csr": "not a csr"})
        assert status == 400 and "no mesh SPIFFE ID" in body["error"]
        viewer = admin.as_(await admin.token_for("a", "viewer"))
        status, _ = await viewer.call("POST", sign_a, {"csr": csr_for(domain, "a", "web")})
        assert status == 403
        # The right app with the app-scoped token: issued, for the configured life, audited.
        got = await web_only.ok("POST", sign_a, {"csr": csr_for(domain, "a", "web")})
        cert = x509.load_pem_x509_certificate(got["cert"].encode())
        assert 600 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 700
        audit = await admin.ok("GET", "/api/v1/workspaces/a/audit")
        issued = [e for e in audit if e["action"] == "certificate.issue"]
        assert [e["target"] for e in issued] == [got["spiffe_id"]]
    assert "refused a CSR from 127.0.0.1" in caplog.text


async def test_apps_limit_only_data_plane_tokens(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch) as (_cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        path = "/api/v1/workspaces/a/tokens"
        status, body = await admin.call("POST", path, {"role": "viewer", "apps": ["web"]})
        assert status == 400 and "only a dataplane token" in body["error"]
        status, body = await admin.call("POST", path, {"role": "dataplane", "apps": ["a/b"]})
        assert status == 400 and "not an app name" in body["error"]


def test_tls_without_files_needs_a_control_plane() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"app": "web", "tls": {"mode": "strict"}}, env={})
    assert caught.value.problems == [
        "tls: mode strict needs cert, key and trust_bundle, "
        "or control: for an identity the control plane issues"
    ]
    with pytest.raises(ConfigError, match="needs cert, key and trust_bundle: no key"):
        load_config({"app": "web", "tls": {"mode": "strict", "cert": __file__}}, env={})


def test_a_shared_store_has_no_ca_unless_one_is_given(tmp_path: Path) -> None:
    from sofamesh.control.config import ca_dir, load_control_config
    from sofamesh.control.mesh_ca import open_ca

    shared = load_control_config({"store": "etcd://127.0.0.1:2379"})
    assert ca_dir(shared) is None and open_ca(shared) is None
    given = load_control_config({"store": "etcd://127.0.0.1:2379", "ca_dir": str(tmp_path / "ca")})
    made = open_ca(given)
    assert made is not None and made.trust_domain == "cluster.local"
    with pytest.raises(ConfigError, match=r"trust_domain: 'other\.test', but the CA"):
        open_ca(load_control_config({"ca_dir": str(tmp_path / "ca"), "trust_domain": "other.test"}))


async def test_the_bundle_carries_the_old_and_new_ca_in_a_rotation(
    tmp_path: Path, monkeypatch: Any
) -> None:
    new = CertificateAuthority.create("cluster.local")
    old = CertificateAuthority.create("cluster.local")
    new.save(tmp_path / "ca")
    both = tmp_path / "both.pem"
    both.write_bytes(cert_pem(old.cert) + cert_pem(new.cert))
    async with running_control(tmp_path, monkeypatch, trust_bundle=str(both)) as (_cp, admin):
        dp, _web, domain = await _setup(admin)
        got = await dp.ok(
            "POST", "/api/v1/workspaces/a/certificates", {"csr": csr_for(domain, "a", "web")}
        )
    bundle = x509.load_pem_x509_certificates(got["bundle"].encode())
    assert bundle == [new.cert, old.cert]  # the signing CA first, each once
