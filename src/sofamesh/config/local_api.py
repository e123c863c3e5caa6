"""The local API's limits and its token: what an SDK in sidecar mode may ask of its sidecar.

The sidecar writes a fresh random token at start to a file only its user can read
(`token_file`, by default one per admin port in a private directory of the user's),
and the local API (`/api/v1/...`) answers only requests that carry it. An SDK in
sidecar mode finds the same file from the sidecar's admin port, or reads
`SOFAMESH_SIDECAR_TOKEN` (the token) or `SOFAMESH_SIDECAR_TOKEN_FILE` (its path).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from sofamesh.config.model import Address, LocalApiConfig

TOKEN_ENV = "SOFAMESH_SIDECAR_TOKEN"
TOKEN_FILE_ENV = "SOFAMESH_SIDECAR_TOKEN_FILE"


def allows_service(config: LocalApiConfig, service: str, published: tuple[str, ...]) -> bool:
    """Whether an app may publish `service`: listed on an inbound listener or allowed."""
    if service in published:
        return True
    return any(
        service.startswith(p[:-1]) if p.endswith("*") else service == p for p in config.services
    )


def allows_upstream(config: LocalApiConfig, upstream: Address) -> bool:
    return is_loopback(upstream.host) or upstream in config.upstreams


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def private_dir() -> Path:
    """This user's directory for sidecar tokens (made 0700 by the sidecar)."""
    return Path(temp_dir()) / f"sofamesh-{os.getuid()}"


def temp_dir() -> str:
    """`tempfile.gettempdir()`'s answer without importing tempfile, which brings shutil, bz2 and
    lzma (0.6 MB an idle sidecar would hold for this one path): the first of $TMPDIR, $TEMP,
    $TMP, /tmp, /var/tmp, /usr/tmp that is a writable directory, else the working directory."""
    named = [os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")]
    for candidate in [*(d for d in named if d), "/tmp", "/var/tmp", "/usr/tmp"]:
        if candidate != os.curdir:
            candidate = os.path.abspath(candidate)
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return os.getcwd()


def default_token_path(admin_port: int) -> Path:
    """Where a sidecar whose admin API listens on `admin_port` keeps its token by default."""
    return private_dir() / f"sidecar-{admin_port}.token"


def token_path(config: LocalApiConfig, admin_port: int) -> Path:
    return Path(config.token_file) if config.token_file else default_token_path(admin_port)
