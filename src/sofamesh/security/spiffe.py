"""SPIFFE IDs of mesh workloads: `spiffe://<trust-domain>/ws/<workspace>/app/<app>`.

The grammar is the SPIFFE ID standard's (SPIFFE-ID.md §2): a trust domain of
lowercase letters, digits, `.`, `-` and `_`; path segments of letters, digits,
`.`, `-` and `_`, none empty, `.` or `..`; no query, fragment, port or user
info. On top of it the mesh's own shape: exactly `ws/<workspace>/app/<app>`,
so the verified app of a peer is read from its ID and nothing else.
"""

from __future__ import annotations

import functools
import re

import attrs

SCHEME = "spiffe://"
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
DEFAULT_TRUST_DOMAIN = "cluster.local"


def _trust_domain(_inst: object, _attr: object, value: str) -> None:
    if not _TRUST_DOMAIN.fullmatch(value):
        raise ValueError(
            f"trust domain must be lowercase letters, digits, '.', '-' or '_', got {value!r}"
        )


def _segment(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not _SEGMENT.fullmatch(value) or value in (".", ".."):
        raise ValueError(
            f"{attr.name} must be letters, digits, '.', '-' or '_' (not '.' or '..'), got {value!r}"
        )


def check_trust_domain(value: str) -> str:
    """`value` if it is a valid trust domain name, else ValueError."""
    _trust_domain(None, None, value)
    return value


@attrs.frozen(slots=True)
class SpiffeId:
    """A mesh workload's identity; `str()` is its URI."""

    trust_domain: str = attrs.field(validator=_trust_domain)
    workspace: str = attrs.field(validator=_segment)
    app: str = attrs.field(validator=_segment)

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """The ID of a mesh workload, or ValueError saying what is wrong with `uri`."""
        if not uri.startswith(SCHEME):
            raise ValueError(f"not a SPIFFE ID (no spiffe:// scheme): {uri!r}")
        domain, slash, path = uri[len(SCHEME) :].partition("/")
        if not slash:
            raise ValueError(f"a SPIFFE ID of a trust domain, not of a workload: {uri!r}")
        if any(c in uri for c in "?#@") or ":" in domain:
            raise ValueError(f"a SPIFFE ID has no query, fragment, user or port: {uri!r}")
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "ws" or parts[2] != "app":
            raise ValueError(f"not a mesh workload ID (.../ws/<workspace>/app/<app>): {uri!r}")
        return cls(domain, parts[1], parts[3])

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ws/{self.workspace}/app/{self.app}"


@functools.lru_cache(maxsize=1024)
def app_of(uri: str) -> str:
    """The app a verified workload ID names (what `app:<name>` rules match)."""
    return SpiffeId.parse(uri).app


def trust_domain_id(trust_domain: str) -> str:
    """The SPIFFE ID of a trust domain itself (what the CA certificate carries)."""
    return SCHEME + check_trust_domain(trust_domain)
