"""The data plane's identity from the control plane: enrolled at start, renewed at 2/3 of life.

With `tls:` (permissive or strict) and `control:` but no `cert`, the agent
runs an `Enroller` (security/enroll.py has the files and the CSR):

- **At start, before serving**: an identity persisted in the state dir that
  names this workload and is not due for renewal is used as it is; otherwise
  a new key and CSR go to the control plane. If that fails, a persisted
  identity that has not expired is used until it does; with none, the data
  plane **does not start** (`IdentityUnavailable`): serving without an
  identity would mean refusing every mTLS peer while looking healthy, or
  worse, plaintext in a mode that promised mTLS.
- **Then** it renews at 2/3 of each certificate's life, and retries a failed
  renewal every `RETRY` seconds (sooner near expiry); new connections use the
  renewed certificate, open ones finish on theirs (the file-based reload).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from sofamesh.config import ConfigError
from sofamesh.control.agent import ControlUnavailable
from sofamesh.security.enroll import Request, renew_time, usable
from sofamesh.security.identity import Identity, IdentityError, IdentitySource
from sofamesh.security.spiffe import SpiffeId

log = logging.getLogger("sofamesh.control.identity")

RETRY = 5.0  # seconds between attempts at a failed renewal (at most)
Call = Callable[..., Awaitable[tuple[int, Any]]]


class IdentityUnavailable(ConnectionError):
    """No identity: the control plane could not be reached and none is persisted."""


class EnrollmentRefused(Exception):
    """The control plane answered, and refused (the message says why)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Enroller:
    def __init__(self, call: Call, workspace: str, app: str, source: IdentitySource) -> None:
        self.call = call
        self.workspace = workspace
        self.app = app
        self.source = source
        self.renewals = 0  # certificates received (tests, statistics)
        self.failures = 0

    @property
    def identity(self) -> Identity | None:
        return self.source.loaded

    async def ensure(self) -> None:
        """An identity in force before serving, or IdentityUnavailable / ConfigError."""
        have, now = self.source.loaded, _now()
        if usable(have, self.workspace, self.app, now):
            assert have is not None
            if now < renew_time(have.cert):
                log.info("identity %s reused from %s", have.spiffe_id, self.source.files.cert)
                return
        try:
            await self.renew()
        except EnrollmentRefused as exc:
            raise ConfigError([f"tls: the control plane refused an identity: {exc}"]) from None
        except (ControlUnavailable, IdentityError, ValueError) as exc:
            if usable(have, self.workspace, self.app, now):
                assert have is not None
                log.warning(
                    "identity not renewed (%s): using %s from %s until it expires at %s",
                    exc, have.spiffe_id, self.source.files.cert, have.not_after.isoformat(),
                )  # fmt: skip
                return
            log.error("no mTLS identity, not starting: %s", exc)
            raise IdentityUnavailable(
                f"tls: no identity: the control plane issued none ({exc}) and none is "
                f"persisted in {self.source.files.cert}; not serving without one"
            ) from None

    async def renew(self) -> Identity:
        """A new key and certificate from the control plane, written and put in force."""
        base = f"/api/v1/workspaces/{self.workspace}"
        status, ca = await self.call("GET", f"{base}/ca")
        if status != 200:
            raise EnrollmentRefused(f"{status}: {_error(ca)}")
        request = Request(SpiffeId(str(ca["trust_domain"]), self.workspace, self.app))
        status, got = await self.call("POST", f"{base}/certificates", {"csr": request.csr_pem})
        if status != 200:
            raise EnrollmentRefused(f"{status}: {_error(got)}")
        await anyio.to_thread.run_sync(
            request.install, self.source.files, str(got["cert"]), str(got["bundle"])
        )
        identity = self.source.check_now()
        self.renewals += 1
        log.info(
            "identity %s issued by the control plane, valid until %s, renewed from %s",
            identity.spiffe_id,
            identity.not_after.isoformat(),
            renew_time(identity.cert).isoformat(),
        )
        return identity

    async def renew_forever(self) -> None:
        while True:
            identity = self.source.loaded
            due = renew_time(identity.cert) if identity is not None else _now()
            await anyio.sleep(max(0.0, (due - _now()).total_seconds()))
            try:
                await self.renew()
            except (EnrollmentRefused, ControlUnavailable, IdentityError, ValueError) as exc:
                self.failures += 1
                await anyio.sleep(self._retry_in(exc))

    def _retry_in(self, exc: Exception) -> float:
        identity = self.source.loaded
        left = (identity.not_after - _now()).total_seconds() if identity else 0.0
        log.warning(
            "identity not renewed (%s); %s; retrying",
            exc,
            f"the certificate expires in {left:.0f}s" if left > 0 else "it has expired",
        )
        return max(0.2, min(RETRY, left / 10)) if left > 0 else RETRY


def _error(body: Any) -> str:
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)
