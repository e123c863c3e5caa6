"""Service discovery backends behind one `Registry` protocol; `open_registry(url)` picks one.

| URL | backend |
|---|---|
| `memory://` | one process (tests, embedded use) |
| `file:///var/tmp/sofamesh` | the embedded default: processes of one host share a directory |
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sofamesh.registry.base import Registry, RegistryError, Snapshot
from sofamesh.registry.file import FileRegistry
from sofamesh.registry.memory import MemoryHub, MemoryRegistry

__all__ = [
    "FileRegistry",
    "MemoryHub",
    "MemoryRegistry",
    "Registry",
    "RegistryError",
    "Snapshot",
    "open_registry",
    "validate_registry_url",
]

SCHEMES = ("memory", "file")


def validate_registry_url(url: str) -> str | None:
    """Why `url` is not a registry URL we can open, or None if it is fine."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        return f"unknown registry scheme {parts.scheme!r} (expected one of {', '.join(SCHEMES)})"
    if parts.scheme == "file" and not parts.path:
        return "file:// registry needs a directory, e.g. file:///var/tmp/sofamesh"
    return None


def open_registry(url: str) -> AbstractAsyncContextManager[Any]:
    """The registry for `url`, as an async context manager owning its background work."""
    problem = validate_registry_url(url)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(url)
    opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        return MemoryRegistry()
    lease = float(opts.get("lease", 10.0))
    poll = float(opts.get("poll", 0.2))
    return FileRegistry(parts.path, lease=lease, poll_interval=poll)
