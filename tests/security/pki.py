"""Certificates for tests: a CA and workload identities as files, good and bad."""

from __future__ import annotations

import datetime
from pathlib import Path

from sofamesh.security.ca import CertificateAuthority, cert_pem, write_identity
from sofamesh.security.identity import IdentityFiles
from sofamesh.security.spiffe import SpiffeId

DOMAIN = "mesh.test"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def files_in(out: Path) -> IdentityFiles:
    return IdentityFiles(str(out / "cert.pem"), str(out / "key.pem"), str(out / "bundle.pem"))


def issue_files(
    ca: CertificateAuthority,
    out: Path,
    app: str,
    *,
    workspace: str = "prod",
    life: datetime.timedelta = datetime.timedelta(hours=24),
    at: datetime.datetime | None = None,
    bundle: bytes | None = None,
    dns: tuple[str, ...] = (),
) -> IdentityFiles:
    """`cert.pem`, `key.pem` and `bundle.pem` for `app`, issued by `ca` at `at` (default now)."""
    workload = SpiffeId(ca.trust_domain, workspace, app)
    cert, key = ca.issue(workload, life=life, now=at, dns=dns)
    write_identity(out, cert, key, bundle if bundle is not None else cert_pem(ca.cert))
    return files_in(out)


def same_key_other_domain(ca: CertificateAuthority, domain: str) -> CertificateAuthority:
    """A CA certificate for another trust domain on `ca`'s key: its leaves verify against `ca`."""
    return CertificateAuthority.create(domain, key=ca.key)
