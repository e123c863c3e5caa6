"""The control plane's configuration: a frozen attrs class, every problem reported with its path."""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from sofamesh.config import Address, ConfigError, read_document, structure
from sofamesh.registry import validate_registry_url
from sofamesh.registry.resilient import parse_hosts
from sofamesh.security.spiffe import check_trust_domain
from sofamesh.transport.tls_https import ServerCertificate

DEFAULT_LISTEN = Address("127.0.0.1", 15080)
DEFAULT_STORE = "sqlite:///var/tmp/sofamesh/control.db"


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be positive, got {value}")


def _trust_domain(_inst: object, attr: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        check_trust_domain(value)


def _file(_inst: object, attr: attrs.Attribute[Any], value: str) -> None:
    if not os.path.isfile(value):
        raise ValueError(f"no such file: {value}")


@attrs.frozen
class ApiTlsConfig:
    """The API over HTTPS: the server's certificate (chain) and key, re-read when they change."""

    cert: str = attrs.field(validator=_file)
    key: str = attrs.field(validator=_file)


@attrs.frozen
class ControlConfig:
    listen: Address = DEFAULT_LISTEN
    registry: str = "file:///var/tmp/sofamesh"  # the mesh registry the catalog reads
    store: str = DEFAULT_STORE  # where the control plane keeps its own state
    report_interval: float = attrs.field(default=5.0, validator=_positive)  # asked of data planes
    lost_after: float = attrs.field(default=15.0, validator=_positive)  # no report: lost
    forget_after: float = attrs.field(default=86400.0, validator=_positive)  # lost: forgotten
    watch_timeout: float = attrs.field(default=25.0, validator=_positive)  # long-poll hold
    max_body_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)
    token_ttl: float = attrs.field(default=12 * 3600.0, validator=_positive)  # login tokens
    max_reports_per_second: float = attrs.field(default=20.0, validator=_positive)  # per plane
    # The mesh CA that signs data planes' CSRs: a `sofamesh ca init` directory, made on the
    # first start if absent. Default: `ca/` beside a sqlite store; with a shared store (etcd)
    # none, since each replica would make its own: give every replica the same directory.
    ca_dir: str | None = None
    # The trust domain of a CA made on the first start; checked against a loaded one.
    trust_domain: str | None = attrs.field(default=None, validator=_trust_domain)
    cert_life: float = attrs.field(default=86400.0, validator=_positive)  # seconds, workloads'
    # More CA certificates for the bundle data planes get (a CA rotation: the old and the new).
    trust_bundle: str | None = attrs.field(default=None, validator=attrs.validators.optional(_file))
    tls: ApiTlsConfig | None = None  # the API over HTTPS
    # Every route but /ready and login needs a token. None: when `listen` is beyond loopback.
    require_token: bool | None = None

    @property
    def tokens_required(self) -> bool:
        if self.require_token is not None:
            return self.require_token
        return not is_loopback(self.listen.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def ca_dir(config: ControlConfig) -> str | None:
    """The CA's directory: configured, or beside a sqlite store (the control plane's state);
    None (no CA) for a store replicas share."""
    if config.ca_dir:
        return config.ca_dir
    parts = urlsplit(config.store)
    if parts.scheme == "sqlite":
        return os.path.join(os.path.dirname(parts.path), "ca")
    return None


def validate_store_url(url: str) -> str | None:
    """Why `url` is not a store we can open, or None."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            return "sqlite:// store needs a file, e.g. sqlite:///var/tmp/sofamesh/control.db"
        return None
    if parts.scheme == "etcd":
        try:
            if not parse_hosts(parts.netloc, 2379):
                return "etcd:// store needs HOST:PORT[,HOST:PORT...]"
        except ValueError as e:
            return f"etcd:// store: {e}"
        return None
    return f"unknown store scheme {parts.scheme!r} (expected sqlite or etcd)"


def load_control_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> ControlConfig:
    """Build and validate the config; raises `ConfigError` naming every problem."""
    if source is None:
        data: Any = {}
    elif isinstance(source, Mapping):
        data = dict(source)
    else:
        data = read_document(source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping, got {type(data).__name__}"])
    problems: list[str] = []
    for key, check in (("registry", validate_registry_url), ("store", validate_store_url)):
        value = data.get(key)
        if isinstance(value, str) and (problem := check(value)):
            problems.append(f"{key}: {problem}")
    try:
        config = structure(ControlConfig, data)
    except ConfigError as e:
        raise ConfigError(problems + e.problems) from None
    if config.tls is not None and (problem := _loads(config.tls)):
        problems.append(f"tls: {problem}")
    if problems:
        raise ConfigError(problems)
    return config


def _loads(tls: ApiTlsConfig) -> str | None:
    """Why the API's certificate and key do not load, or None."""
    try:
        ServerCertificate(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        return f"{tls.cert} / {tls.key} do not load: {exc}"
    return None


def describe(config: ControlConfig) -> dict[str, Any]:
    """The config as plain JSON-able data."""
    out: dict[str, Any] = json.loads(json.dumps(attrs.asdict(config), default=str))
    out["listen"] = str(config.listen)
    return out
