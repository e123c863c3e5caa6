"""The mesh CA: what it issues (checked by OpenSSL itself), and which CSRs it signs."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from tests.security.pki import DOMAIN, issue_files

from sofamesh.security.ca import (
    CertificateAuthority,
    CsrRefused,
    cert_pem,
    make_csr,
    new_key,
    uri_sans,
)
from sofamesh.security.spiffe import SpiffeId

WEB = SpiffeId(DOMAIN, "prod", "web")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(DOMAIN)


def test_the_ca_is_a_p256_root_naming_its_trust_domain(ca: CertificateAuthority) -> None:
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"
    assert ca.trust_domain == DOMAIN
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0


def test_a_workload_certificate_carries_its_spiffe_id_for_24_hours(
    ca: CertificateAuthority,
) -> None:
    cert, key = ca.issue(WEB)
    assert uri_sans(cert) == ["spiffe://mesh.test/ws/prod/app/web"]
    assert cert.public_key() == key.public_key()
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(hours=24) <= life <= datetime.timedelta(hours=24, minutes=2)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_openssl_verifies_what_the_ca_issues(ca: CertificateAuthority, tmp_path: Path) -> None:
    files = issue_files(ca, tmp_path, "web")
    out = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", files.trust_bundle, files.cert],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), out.stderr
    other = CertificateAuthority.create(DOMAIN)
    (tmp_path / "other.pem").write_bytes(cert_pem(other.cert))
    wrong = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "other.pem"), files.cert],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0


def test_a_csr_for_the_allowed_id_is_signed_for_its_own_key(ca: CertificateAuthority) -> None:
    key = new_key()
    cert = ca.sign_csr(make_csr(key, WEB), WEB)
    assert cert.public_key() == key.public_key()
    assert uri_sans(cert) == [str(WEB)]
    cert.verify_directly_issued_by(ca.cert)


def test_a_csr_for_another_app_is_refused(ca: CertificateAuthority) -> None:
    csr = make_csr(new_key(), SpiffeId(DOMAIN, "prod", "payments"))
    with pytest.raises(CsrRefused, match=r"may have only spiffe://mesh\.test/ws/prod/app/web"):
        ca.sign_csr(csr, WEB)


def test_a_csr_with_a_key_other_than_p256_is_refused(ca: CertificateAuthority) -> None:
    csr = make_csr(ec.generate_private_key(ec.SECP384R1()), WEB)
    with pytest.raises(CsrRefused, match="P-256"):
        ca.sign_csr(csr, WEB)


def test_an_id_outside_the_trust_domain_is_not_signed(ca: CertificateAuthority) -> None:
    elsewhere = SpiffeId("elsewhere.test", "prod", "web")
    with pytest.raises(CsrRefused, match="not in this CA's trust domain"):
        ca.sign_csr(make_csr(new_key(), elsewhere), elsewhere)


def test_save_and_load_keep_the_key_private(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path)
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0
    loaded = CertificateAuthority.load(tmp_path)
    assert loaded.cert == ca.cert and loaded.trust_domain == DOMAIN
