"""`control:` in a mesh config: one control-plane URL, or several for failover."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import attrs


@attrs.frozen
class ControlUrls:
    """`http://a:15080` or `http://a:15080,http://b:15080` (or a YAML list of them)."""

    addresses: tuple[tuple[str, int], ...]

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
        return cls(tuple(_address(item) for item in items))

    def __str__(self) -> str:
        return ",".join(f"http://{h}:{p}" for h, p in self.addresses)


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"expected http://HOST:PORT, got {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"a control-plane URL has no path, got {url!r}")
    return parts.hostname, port
