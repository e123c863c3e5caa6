"""Who may do what: password hashes, tokens, roles, and the login throttle.

Roles: `admin` (a user flag: everything), and per workspace `owner` >
`editor` > `viewer`, plus `dataplane` for the tokens sidecars and SDK apps use
(report and receive their workspace's rules, nothing else). A route names the
least role it needs (`Need`); `check` answers 404 when the caller has no role
at all in the workspace (its existence is not revealed) and 403 when the role
is too small.

Passwords are hashed with scrypt (RFC 7914; n=2**14, r=8, p=1: about 50 ms and
16 MiB per hash). Tokens are 256 random bits, shown once and stored as their
SHA-256 (a stolen store reveals no usable token).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import secrets
from typing import Literal

import attrs

Role = Literal["owner", "editor", "viewer", "dataplane"]
ROLES: tuple[str, ...] = ("owner", "editor", "viewer", "dataplane")
Need = Literal["public", "user", "admin", "owner", "editor", "viewer", "dataplane"]
_RANK = {"viewer": 1, "editor": 2, "owner": 3}
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
TOKEN_PREFIX = "smt_"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, maxmem=64 << 20, **_SCRYPT)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 << 20,
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, _unb64(digest))


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))


def burn_time(password: str) -> None:
    """Check against a throwaway hash, so a failed login takes as long whether or not the
    name is known."""
    verify_password(password, _dummy_hash())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@attrs.frozen
class Principal:
    """The caller of one request: a user (with roles per workspace) or a scoped token."""

    name: str
    admin: bool = False
    roles: dict[str, str] = attrs.field(factory=dict)  # workspace -> role
    token_id: str = ""
    # The apps a data-plane token stands for (the identities the CA gives it); empty: any
    # app of its workspace.
    apps: tuple[str, ...] = ()

    def role_in(self, workspace: str) -> str | None:
        return "owner" if self.admin else self.roles.get(workspace)


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check(principal: Principal | None, need: Need, workspace: str | None) -> None:
    """Raise `Denied` (401, 403 or 404) unless `principal` may do what `need` names."""
    if need == "public":
        return
    if principal is None:
        raise Denied(401, "authentication required: send Authorization: Bearer TOKEN")
    if principal.admin:
        return
    if need == "user":
        if principal.roles and set(principal.roles.values()) == {"dataplane"}:
            raise Denied(403, "a data-plane token may only report and receive rules")
        return
    if need == "admin":
        raise Denied(403, "only an admin may do this")
    assert workspace is not None, need
    role = principal.roles.get(workspace)
    if role is None:
        raise Denied(404, f"no workspace {workspace!r}")
    if need == "dataplane":
        if role != "dataplane":
            raise Denied(403, "only a data-plane token may do this")
        return
    if role == "dataplane" or _RANK[role] < _RANK[need]:
        raise Denied(403, f"the {role} role may not do this (needs {need})")


class LoginThrottle:
    """Slow down guessing: after `free` failures for a name (or from a peer), each further
    attempt must wait twice as long as the last, up to `max_delay`; a success clears the name.

    A pure state machine taking `now`; the API answers 429 with Retry-After while locked.
    """

    def __init__(self, free: int = 3, base: float = 1.0, max_delay: float = 60.0) -> None:
        self.free, self.base, self.max_delay = free, base, max_delay
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, next allowed)

    def wait(self, keys: list[str], now: float) -> float:
        """Seconds to wait before an attempt for `keys` is allowed (0: go ahead)."""
        until = max((self._failures.get(k, (0, 0.0))[1] for k in keys), default=0.0)
        return max(0.0, until - now)

    def failed(self, keys: list[str], now: float) -> None:
        for k in keys:
            count = self._failures.get(k, (0, 0.0))[0] + 1
            extra = count - self.free
            delay = 0.0 if extra <= 0 else min(self.max_delay, self.base * 2 ** (extra - 1))
            self._failures[k] = (count, now + delay)
        if len(self._failures) > 10_000:  # bounded memory under a spray of names
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, keys: list[str]) -> None:
        for k in keys:
            self._failures.pop(k, None)

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
