"""`control:` in a mesh config: the control plane's URLs, and this data plane's own policy.

`http://` or `https://` (the control plane's API over TLS, verified against
`control_ca`), the same scheme for every address. The short form is the URLs;
the mapping form adds what this data plane refuses of what the control plane
pushes, whatever the control plane says (`sofamesh.control.agent` applies it):

    control: {urls: http://a:15080, refuse_kinds: [faults], max_document_bytes: 1048576}
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import attrs

from sofamesh.config.structure import structure

# The sections of a rules document (`governance.rules.RulesDocument`, which sits above
# config; tests/config checks the two lists are the same).
RulesSection = Literal[
    "routes",
    "load_balancing",
    "breakers",
    "rate_limits",
    "hot_params",
    "faults",
    "auth",
    "fallbacks",
    "resource_limits",
]
DEFAULT_MAX_DOCUMENT_BYTES = 4 * 1024 * 1024  # far above a real document, far below memory


@attrs.frozen
class ControlUrls:
    """`http://a:15080` or `http://a:15080,http://b:15080` (or a YAML list of them).

    `refuse_kinds`: rule kinds (rules document sections) this data plane never takes
    from the control plane; `max_document_bytes`: a pushed document larger than this
    (as compact JSON) is refused before it is parsed.
    """

    addresses: tuple[tuple[str, int], ...]
    secure: bool = False  # https://
    refuse_kinds: tuple[str, ...] = ()
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES

    @classmethod
    def parse(cls, value: Any) -> ControlUrls:
        if isinstance(value, ControlUrls):
            return value
        if isinstance(value, dict):
            return _policy(value)
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            items = list(value)
        else:
            raise ValueError(f"expected http://HOST:PORT or a list of them, got {value!r}")
        if not items:
            raise ValueError("expected at least one http://HOST:PORT")
        schemes = {urlsplit(item).scheme for item in items}
        if len(schemes) > 1:
            raise ValueError(f"expected one scheme for every address, got {sorted(schemes)}")
        return cls(tuple(_address(item) for item in items), schemes == {"https"})

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"

    def __str__(self) -> str:
        return ",".join(f"{self.scheme}://{h}:{p}" for h, p in self.addresses)


class _Urls:
    """The mapping form's `urls`: the short form, never another mapping."""

    @classmethod
    def parse(cls, value: Any) -> ControlUrls:
        if isinstance(value, dict):
            raise ValueError(f"expected http://HOST:PORT or a list of them, got {value!r}")
        return ControlUrls.parse(value)


@attrs.frozen
class _Policy:
    """The mapping form, read with `structure` so each problem carries its path."""

    urls: _Urls
    refuse_kinds: tuple[RulesSection, ...] = ()
    max_document_bytes: int = attrs.field(
        default=DEFAULT_MAX_DOCUMENT_BYTES, validator=attrs.validators.gt(0)
    )


def _policy(value: dict[str, Any]) -> ControlUrls:
    policy = structure(_Policy, value)
    urls: ControlUrls = policy.urls  # type: ignore[assignment]  # what _Urls.parse made
    return attrs.evolve(
        urls,
        refuse_kinds=tuple(dict.fromkeys(policy.refuse_kinds)),
        max_document_bytes=policy.max_document_bytes,
    )


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ValueError(f"expected http://HOST:PORT or https://HOST:PORT, got {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"a control-plane URL has no path, got {url!r}")
    return parts.hostname, port
