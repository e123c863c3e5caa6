"""The control plane as the mesh CA: it signs the CSRs of authenticated data planes.

A data plane sends a CSR naming its SPIFFE ID, with a data-plane token of
its workspace; the key stays with the data plane. The CA signs only an ID
that token may have:

- the trust domain is the CA's;
- the workspace is the token's (a token of `shop` gets no identity in `bank`:
  the dispatcher already refuses a token on another workspace's path, and the
  ID's workspace must be the path's);
- the app is one the token is for, if the token names apps (`apps` when it is
  created); a token that names none stands for every app of its workspace,
  as it does for reports and rules.

Each issue is in the audit log (`certificate.issue`, with the serial and the
expiry); each refusal answers 403 (or 400 for a malformed CSR) and logs a
line naming the peer and the reason.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from sofamesh.config import ConfigError
from sofamesh.control.api import ApiError, Call, Route
from sofamesh.control.config import ControlConfig, ca_dir
from sofamesh.security.ca import CA_KEY, CertificateAuthority, CsrRefused, cert_pem
from sofamesh.security.spiffe import DEFAULT_TRUST_DOMAIN, SpiffeId

if TYPE_CHECKING:
    from sofamesh.control.app import ControlPlane

log = logging.getLogger("sofamesh.control.ca")


def open_ca(config: ControlConfig) -> CertificateAuthority | None:
    """The CA in the configured directory, made (and saved) on the first start; None without
    a directory (an etcd store and no `ca_dir`)."""
    where = ca_dir(config)
    if where is None:
        log.info("no ca_dir: this control plane issues no workload certificates")
        return None
    directory = Path(where)
    if (directory / CA_KEY).exists():
        ca = CertificateAuthority.load(directory)
        if config.trust_domain and config.trust_domain != ca.trust_domain:
            raise ConfigError(
                [
                    f"trust_domain: {config.trust_domain!r}, but the CA in {directory} is for "
                    f"{ca.trust_domain!r} (a trust domain changes with a new CA)"
                ]
            )
        return ca
    ca = CertificateAuthority.create(config.trust_domain or DEFAULT_TRUST_DOMAIN)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca.save(directory)
    log.warning("made a new mesh CA for trust domain %s in %s", ca.trust_domain, directory)
    return CertificateAuthority.load(directory)  # a replica that raced us: whichever was saved


class CaApi:
    """`GET .../ca` (the trust domain and bundle) and `POST .../certificates` (sign a CSR)."""

    def __init__(self, cp: ControlPlane, ca: CertificateAuthority | None) -> None:
        self.cp = cp
        self._ca = ca
        self.life = datetime.timedelta(seconds=cp.config.cert_life)
        self.issued = 0
        self.refused = 0

    def routes(self) -> list[Route]:
        ws = "/api/v1/workspaces/{ws}"
        return [
            Route("GET", f"{ws}/ca", "dataplane", self.bundle, "The trust domain and bundle"),
            Route(
                "POST",
                f"{ws}/certificates",
                "dataplane",
                self.sign,
                "Sign a data plane's CSR: its workload certificate",
                "Csr",
            ),
        ]

    @property
    def ca(self) -> CertificateAuthority:
        if self._ca is None:
            raise ApiError(404, "this control plane has no CA: set ca_dir to issue identities")
        return self._ca

    def trust_bundle(self) -> str:
        """The CA's certificate, and those of `trust_bundle` (read at each request: replacing
        the file during a CA rotation needs no restart); each certificate once."""
        certs = [self.ca.cert]
        if self.cp.config.trust_bundle:
            try:
                extra = x509.load_pem_x509_certificates(
                    Path(self.cp.config.trust_bundle).read_bytes()
                )
            except (OSError, ValueError) as exc:
                log.warning("trust_bundle not read, the CA alone is sent: %s", exc)
                extra = []
            certs += [c for c in extra if c != self.ca.cert]
        return "".join(cert_pem(c).decode() for c in certs)

    async def bundle(self, _call: Call) -> Any:
        return {"trust_domain": self.ca.trust_domain, "bundle": self.trust_bundle()}

    async def sign(self, call: Call) -> Any:
        try:
            csr, workload = self._check(call)
            cert = self.ca.sign_csr(csr, workload, life=self.life)
        except (ApiError, CsrRefused) as exc:
            self.refused += 1
            reason = exc.message if isinstance(exc, ApiError) else str(exc)
            log.warning(
                "refused a CSR from %s (token %s): %s", call.peer, self._token(call), reason
            )
            raise exc if isinstance(exc, ApiError) else ApiError(403, reason) from None
        self.issued += 1
        serial = format(cert.serial_number, "x")
        expiry = cert.not_valid_after_utc.timestamp()
        await self.cp.records.audit(
            call.actor, call.workspace, "certificate.issue", str(workload), serial=serial
        )
        log.info("issued %s (serial %s) to %s", workload, serial, call.peer)
        return {
            "spiffe_id": str(workload),
            "cert": cert_pem(cert).decode(),
            "bundle": self.trust_bundle(),
            "serial": serial,
            "not_after": expiry,
        }

    def _check(self, call: Call) -> tuple[x509.CertificateSigningRequest, SpiffeId]:
        """The CSR and the ID it asks for, if this caller may have it; ApiError otherwise."""
        pem = call.json().get("csr")
        if not isinstance(pem, str):
            raise ApiError(400, "csr: expected a PEM certificate signing request")
        try:
            csr = x509.load_pem_x509_csr(pem.encode())
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
            workload = SpiffeId.parse(uris[0] if len(uris) == 1 else "")
        except (ValueError, x509.ExtensionNotFound) as exc:
            raise ApiError(400, f"csr: no mesh SPIFFE ID requested: {exc}") from None
        if workload.trust_domain != self.ca.trust_domain:
            raise ApiError(403, f"{workload} is outside the trust domain {self.ca.trust_domain!r}")
        if workload.workspace != call.workspace:
            raise ApiError(403, f"a token of workspace {call.workspace!r} may not have {workload}")
        apps = call.principal.apps if call.principal else ()
        if apps and workload.app not in apps:
            raise ApiError(403, f"this token is for apps {list(apps)}, not {workload.app!r}")
        return csr, workload

    @staticmethod
    def _token(call: Call) -> str:
        return call.principal.token_id if call.principal else "-"
