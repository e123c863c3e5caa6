"""The mesh CA: an ECDSA P-256 root that signs short-lived workload certificates.

A workload certificate (an X.509-SVID, SPIFFE's X509-SVID.md) carries the
workload's SPIFFE ID as its one URI SAN, is a leaf (`CA:FALSE`) for both ends
of a TLS connection (serverAuth and clientAuth), and lives 24 hours unless
told otherwise. The CA certificate names its trust domain (`spiffe://<td>`)
as its URI SAN, so whoever holds the CA directory knows which IDs it issues.

Private keys are made where they are used: `issue` makes the key of a
workload it writes files for (`sofamesh ca issue`), and `sign_csr` signs the
public key of a CSR whose private key never left its data plane.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sofamesh.security.spiffe import SpiffeId, trust_domain_id

WORKLOAD_LIFE = datetime.timedelta(hours=24)
CA_LIFE = datetime.timedelta(days=3650)
SERVER_LIFE = datetime.timedelta(days=90)  # the control plane's own certificate
# Not-before is set this far back, so a peer whose clock is a little behind ours accepts
# a certificate issued a moment ago.
CLOCK_SKEW = datetime.timedelta(minutes=1)

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"

PrivateKey = ec.EllipticCurvePrivateKey


class CsrRefused(ValueError):
    """A CSR the CA will not sign; the message says why."""


def new_key() -> PrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


@attrs.frozen
class CertificateAuthority:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def trust_domain(self) -> str:
        uris = uri_sans(self.cert)
        if len(uris) != 1 or not uris[0].startswith("spiffe://"):
            raise ValueError("the CA certificate names no trust domain (spiffe://<td> URI SAN)")
        return uris[0][len("spiffe://") :]

    @classmethod
    def create(
        cls,
        trust_domain: str,
        *,
        life: datetime.timedelta = CA_LIFE,
        now: datetime.datetime | None = None,
        key: PrivateKey | None = None,
    ) -> CertificateAuthority:
        """A new self-signed root for `trust_domain` (with `key`: a new certificate for it)."""
        key, start = key or new_key(), _now(now)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sofamesh"),
                x509.NameAttribute(NameOID.COMMON_NAME, "sofamesh CA"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = (
            _validity(x509.CertificateBuilder(), start, life)
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(trust_domain_id(trust_domain))]
                ),
                critical=False,
            )
        )
        return cls(builder.sign(key, hashes.SHA256()), key)

    @classmethod
    def load(cls, directory: str | Path) -> CertificateAuthority:
        """The CA written by `save` (`ca.pem`, `ca-key.pem`) in `directory`."""
        d = Path(directory)
        cert = x509.load_pem_x509_certificate((d / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((d / CA_KEY).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{d / CA_KEY}: not an ECDSA key")
        return cls(cert, key)

    def save(self, directory: str | Path) -> None:
        """Write `ca.pem` and `ca-key.pem` (readable by the owner only) into `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_file(d / CA_CERT, cert_pem(self.cert), 0o644)
        write_file(d / CA_KEY, key_pem(self.key), 0o600)

    def issue(
        self,
        workload: SpiffeId,
        *,
        life: datetime.timedelta = WORKLOAD_LIFE,
        now: datetime.datetime | None = None,
        dns: tuple[str, ...] = (),
    ) -> tuple[x509.Certificate, PrivateKey]:
        """A new key and its certificate for `workload` (files-based identity).

        `dns`: host names to add as DNS SANs, for clients outside the mesh that
        check a host name (gRPC's TLS credentials); the SPIFFE ID stays the one URI.
        """
        key = new_key()
        return self.sign(key.public_key(), workload, life=life, now=now, dns=dns), key

    def issue_server(
        self,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        *,
        life: datetime.timedelta = SERVER_LIFE,
        now: datetime.datetime | None = None,
    ) -> tuple[x509.Certificate, PrivateKey]:
        """A key and a server certificate for host names and addresses (serverAuth only): the
        control plane's API over HTTPS, which clients check by name, not by SPIFFE ID."""
        if not dns and not ips:
            raise ValueError("a server certificate needs at least one DNS name or IP address")
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        key = new_key()
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        common_name = (dns or ips)[0]
        builder = (
            _validity(x509.CertificateBuilder(), _now(now), life)
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
        )
        return builder.sign(self.key, hashes.SHA256()), key

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        allowed: SpiffeId,
        *,
        life: datetime.timedelta = WORKLOAD_LIFE,
        now: datetime.datetime | None = None,
    ) -> x509.Certificate:
        """Sign `csr` if it asks for exactly `allowed`, the ID its authenticated sender may have.

        `CsrRefused` otherwise: a bad signature (the sender does not hold the
        key), a key that is not P-256, or any other ID or SAN requested.
        """
        if not csr.is_signature_valid:
            raise CsrRefused("the CSR's signature does not verify")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise CsrRefused("the CSR's key must be ECDSA P-256")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            raise CsrRefused("the CSR requests no SPIFFE ID (no URI SAN)") from None
        requested = [str(n.value) for n in san]
        if requested != [str(allowed)]:
            raise CsrRefused(f"the CSR requests {requested}; this caller may have only {allowed}")
        return self.sign(key, allowed, life=life, now=now)

    def sign(
        self,
        public_key: ec.EllipticCurvePublicKey,
        workload: SpiffeId,
        *,
        life: datetime.timedelta = WORKLOAD_LIFE,
        now: datetime.datetime | None = None,
        dns: tuple[str, ...] = (),
    ) -> x509.Certificate:
        """A workload certificate for `public_key` with `workload` as its URI SAN."""
        if workload.trust_domain != self.trust_domain:
            raise CsrRefused(f"{workload} is not in this CA's trust domain {self.trust_domain!r}")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sofamesh"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, workload.workspace),
                x509.NameAttribute(NameOID.COMMON_NAME, workload.app),
            ]
        )
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = (
            _validity(x509.CertificateBuilder(), _now(now), life)
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(str(workload)),
                        *(x509.DNSName(name) for name in dns),
                    ]
                ),
                critical=False,
            )
        )
        return builder.sign(self.key, hashes.SHA256())


def _validity(
    builder: x509.CertificateBuilder, start: datetime.datetime, life: datetime.timedelta
) -> x509.CertificateBuilder:
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + life)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_csr(key: PrivateKey, workload: SpiffeId) -> x509.CertificateSigningRequest:
    """What a data plane sends the CA: its SPIFFE ID, signed by the key it keeps."""
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(workload))])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, workload.app)]))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )


def uri_sans(cert: x509.Certificate) -> list[str]:
    """The URI SANs of `cert` (a workload's SPIFFE ID, a CA's trust domain)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically (a reader sees the old file or the new, whole)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_identity(out: str | Path, cert: x509.Certificate, key: PrivateKey, bundle: bytes) -> None:
    """`bundle.pem`, `key.pem` (owner only) and `cert.pem` in `out`, in that order: a watcher
    that sees a new certificate finds its key already there. (A watcher that reads between
    the key and the certificate finds a pair that does not match, and keeps its last one.)"""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    write_file(d / "bundle.pem", bundle, 0o644)
    write_file(d / "key.pem", key_pem(key), 0o600)
    write_file(d / "cert.pem", cert_pem(cert), 0o644)
