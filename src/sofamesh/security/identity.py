"""A workload's identity from files, re-read when they change (the cert-manager / SPIRE shape).

Three PEM files: the certificate (the leaf first, then any intermediates),
its private key, and the trust bundle (one or more CA certificates: during a
CA rotation, the old and the new). Whoever renews them (`sofamesh ca issue`,
cert-manager's CSI driver, a SPIRE helper) replaces them in place; the
`IdentitySource` notices at most `check_interval` seconds later, by their
modification times and sizes, and loads them again. A set that does not load
(a key that does not match its certificate, half-written files) is logged
and the last good identity stays in force until the next change.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from sofamesh.security.spiffe import SpiffeId

if TYPE_CHECKING:  # cryptography is loaded with the first identity: ~9 MB a plaintext mesh spares
    from cryptography import x509

log = logging.getLogger("sofamesh.security")

CHECK_INTERVAL = 1.0  # seconds between looks at the files' modification times
RENEW_AT = 2 / 3  # of a certificate's life: when it is due for renewal


class IdentityError(ValueError):
    """Identity files that cannot be used; the message names the file and the problem."""


@attrs.frozen
class IdentityFiles:
    cert: str
    key: str
    trust_bundle: str

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """What changes when any of the files is replaced: (mtime in ns, size) of each."""
        stats = [os.stat(p) for p in (self.cert, self.key, self.trust_bundle)]
        return tuple((s.st_mtime_ns, s.st_size) for s in stats)


@attrs.frozen(eq=False)
class Identity:
    """One loaded set of identity files; a new object for every reload."""

    files: IdentityFiles
    spiffe_id: SpiffeId
    cert: x509.Certificate
    bundle: tuple[x509.Certificate, ...]
    stamp: tuple[tuple[int, int], ...]
    # The certificate chain and key as read and checked together: TLS contexts load these
    # bytes, never the files again, which a renewal may be rewriting one by one.
    chain_pem: bytes = attrs.field(default=b"", repr=False)

    @property
    def not_after(self) -> datetime.datetime:
        return self.cert.not_valid_after_utc

    @property
    def renew_after(self) -> datetime.datetime:
        """2/3 into the certificate's life: when a renewer should replace it."""
        start = self.cert.not_valid_before_utc
        return start + (self.not_after - start) * RENEW_AT


def load_identity(files: IdentityFiles) -> Identity:
    """The identity in `files`, or IdentityError naming what is wrong."""
    from cryptography.hazmat.primitives import serialization

    from sofamesh.security.ca import uri_sans

    stamp = files.stamp()
    cert_pem = _read(files.cert)
    certs = _parse_certs(files.cert, cert_pem)
    leaf = certs[0]
    ids = uri_sans(leaf)
    if len(ids) != 1:
        raise IdentityError(f"{files.cert}: expected one SPIFFE ID as URI SAN, found {ids}")
    try:
        spiffe_id = SpiffeId.parse(ids[0])
    except ValueError as exc:
        raise IdentityError(f"{files.cert}: {exc}") from None
    key_pem = _read(files.key)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise IdentityError(f"{files.key}: not a PEM private key: {exc}") from None
    if key.public_key() != leaf.public_key():
        raise IdentityError(f"{files.key} is not the key of {files.cert}")
    chain_pem = cert_pem.rstrip(b"\n") + b"\n" + key_pem
    return Identity(files, spiffe_id, leaf, _certs(files.trust_bundle), stamp, chain_pem)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise IdentityError(f"{path}: {exc.strerror or exc}") from None


def _certs(path: str) -> tuple[x509.Certificate, ...]:
    return _parse_certs(path, _read(path))


def _parse_certs(path: str, pem: bytes) -> tuple[x509.Certificate, ...]:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise IdentityError(f"{path}: not PEM certificates: {exc}") from None
    if not certs:
        raise IdentityError(f"{path}: no certificate")
    return tuple(certs)


class IdentitySource:
    """The identity in force, from files re-read when they change.

    `current()` is cheap: it looks at the files at most once per
    `check_interval`, and returns the same `Identity` object until they change.
    """

    def __init__(
        self,
        files: IdentityFiles,
        *,
        check_interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        pending: bool = False,
    ) -> None:
        self.files = files
        self._interval = check_interval
        self._clock = clock
        self._identity: Identity | None = None
        self.reloads = 0
        self.failed_reloads = 0
        try:
            self._identity = load_identity(files)
        except (IdentityError, OSError):
            # At start, files that do not load are an error, unless a renewer (the control
            # plane's enrollment) is about to write them: then there is no identity yet, and
            # every handshake fails until there is one.
            if not pending:
                raise
        self._checked = clock()
        if self._identity is not None:
            _warn_if_stale(self._identity)

    @property
    def loaded(self) -> Identity | None:
        """The identity in force, or None while a pending source has none yet."""
        return self._identity

    def current(self) -> Identity:
        now = self._clock()
        if now - self._checked >= self._interval:
            self._checked = now
            self._reload_if_changed()
        return self._in_force()

    def check_now(self) -> Identity:
        """Look at the files now (a renewer that just wrote them, a test), not at the next tick."""
        self._checked = self._clock()
        self._reload_if_changed()
        return self._in_force()

    def _in_force(self) -> Identity:
        if self._identity is None:
            raise IdentityError(f"no identity yet: {self.files.cert} has not been issued")
        return self._identity

    def _reload_if_changed(self) -> None:
        old = self._identity
        try:
            if old is not None and self.files.stamp() == old.stamp:
                return
            fresh = load_identity(self.files)
        except (IdentityError, OSError) as exc:
            self.failed_reloads += 1
            keeping = old.spiffe_id if old is not None else "no identity"
            log.warning("identity files not reloaded, keeping %s: %s", keeping, exc)
            return
        self._identity = fresh
        self.reloads += 1
        log.info(
            "identity reloaded: %s, valid until %s", fresh.spiffe_id, fresh.not_after.isoformat()
        )
        _warn_if_stale(fresh)


def _warn_if_stale(identity: Identity) -> None:
    """Say so when this workload's own certificate will be refused by its peers."""
    now = datetime.datetime.now(datetime.UTC)
    cert = identity.cert
    if now > identity.not_after:
        log.warning(
            "identity %s expired at %s: peers will refuse it until %s is renewed",
            identity.spiffe_id,
            identity.not_after.isoformat(),
            identity.files.cert,
        )
    elif now < cert.not_valid_before_utc:
        log.warning(
            "identity %s is not valid before %s: peers will refuse it until then (clock skew?)",
            identity.spiffe_id,
            cert.not_valid_before_utc.isoformat(),
        )
