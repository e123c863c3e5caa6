"""`control:` in a mesh config: one control-plane URL, or several for failover.

`http://` or `https://` (the control plane's API over TLS, verified against
`control_ca`), the same scheme for every address.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import attrs


@attrs.frozen
class ControlUrls:
    """`http://a:15080` or `http://a:15080,http://b:15080` (or a YAML list of them)."""

    addresses: tuple[tuple[str, int], ...]
    secure: bool = False  # https://

    @classmethod
    def parse(cls, value: Any) -> ControlUrls:
        if isinstance(value, ControlUrls):
            return value
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
