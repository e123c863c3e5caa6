"""A workload identity the control plane issues: the key made here, a CSR, files in the state dir.

A data plane with `tls:` and `control:` but no `cert` makes its ECDSA P-256
key itself (it never leaves the process and its state dir), asks the
control plane's CA to sign a CSR naming its SPIFFE ID, and writes the result
as the same three files a file-based identity reads (`cert.pem`, `key.pem`,
`bundle.pem` under `<state dir>/<workspace>-<app>.identity/`), so the
`IdentitySource` that reloads files serves this identity too: a renewed
certificate is used by new connections while open ones finish on theirs. A
restart reuses the persisted identity until it expires.

This module holds the parts without I/O to the control plane (the agent's
`control/enroll.py` does the calls).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sofamesh.security.ca import (
    CLOCK_SKEW,
    PrivateKey,
    make_csr,
    new_key,
    uri_sans,
    write_identity,
)
from sofamesh.security.identity import RENEW_AT, Identity, IdentityError, IdentityFiles
from sofamesh.security.spiffe import SpiffeId

STATE_DIR = "/var/tmp/sofamesh/state"  # a data plane's, unless SOFAMESH_STATE_DIR says


def state_dir_of(env: Mapping[str, str]) -> str:
    """The data plane's state dir (persisted rules, the identity the control plane issued)."""
    return env.get("SOFAMESH_STATE_DIR") or STATE_DIR


def identity_files(state_dir: str | os.PathLike[str], workspace: str, app: str) -> IdentityFiles:
    """Where the identity the control plane issued to `app` of `workspace` is kept."""
    d = Path(state_dir) / f"{workspace}-{app}.identity"
    return IdentityFiles(str(d / "cert.pem"), str(d / "key.pem"), str(d / "bundle.pem"))


def usable(identity: Identity | None, workspace: str, app: str, now: datetime.datetime) -> bool:
    """Whether a persisted identity names this workload and has not expired."""
    if identity is None:
        return False
    sid = identity.spiffe_id
    return sid.workspace == workspace and sid.app == app and now < identity.not_after


def renew_time(cert: x509.Certificate) -> datetime.datetime:
    """2/3 into the certificate's life, counted from when it was issued.

    Our CA dates `not_before` back by `CLOCK_SKEW` for peers whose clocks are
    behind; counting from there would renew a short-lived certificate at once.
    """
    after = cert.not_valid_after_utc
    issued = min(cert.not_valid_before_utc + CLOCK_SKEW, after)
    return issued + (after - issued) * RENEW_AT


class Request:
    """One enrollment: a fresh key and the CSR that asks for `workload` with it."""

    def __init__(self, workload: SpiffeId) -> None:
        self.workload = workload
        self.key: PrivateKey = new_key()
        csr = make_csr(self.key, workload)
        self.csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def install(self, files: IdentityFiles, cert_pem: str, bundle_pem: str) -> x509.Certificate:
        """Check what the CA answered and write it with our key; IdentityError if unusable."""
        try:
            certs = x509.load_pem_x509_certificates(cert_pem.encode())
            x509.load_pem_x509_certificates(bundle_pem.encode())
        except ValueError as exc:
            raise IdentityError(f"the control plane sent no PEM certificate: {exc}") from None
        leaf = certs[0]
        if leaf.public_key() != self.key.public_key():
            raise IdentityError("the control plane's certificate is not for the key we sent")
        if uri_sans(leaf) != [str(self.workload)]:
            raise IdentityError(f"the control plane's certificate names {uri_sans(leaf)}")
        out = Path(files.cert).parent
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_identity(out, leaf, self.key, bundle_pem.encode())
        return leaf
