"""The protocol registry: the one list of the protocols the mesh carries, by name.

Each protocol is a slice, `sofamesh.protocols.<name>/`, whose `ProtocolSupport`
is registered here as a "module:Class" string and imported on first use (like
an entry point), so `config/` and `upstream/` can ask for the names without
importing any protocol (the supports themselves import `config`). A support
that builds on another (gRPC on HTTP/2) names it, and gets that instance.
See README.md for what a slice holds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from sofamesh.clock import Clock
    from sofamesh.config.model import PolicyConfig
    from sofamesh.protocols.base import HealthProbe, ProtocolSupport, Route, Server
    from sofamesh.protocols.bolt.support import BoltSupport
    from sofamesh.protocols.grpc.support import GrpcSupport
    from sofamesh.protocols.h2.support import H2Support
    from sofamesh.protocols.http.support import HttpSupport


class Registration(NamedTuple):
    support: str  # "module:Class" of its ProtocolSupport
    builds_on: str | None = None  # a protocol registered before it, passed to its constructor


# In dependency order: a protocol comes after the one it builds on.
PROTOCOLS: dict[str, Registration] = {
    "http": Registration("sofamesh.protocols.http.support:HttpSupport"),
    "h2": Registration("sofamesh.protocols.h2.support:H2Support"),
    "grpc": Registration("sofamesh.protocols.grpc.support:GrpcSupport", builds_on="h2"),
    "bolt": Registration("sofamesh.protocols.bolt.support:BoltSupport"),
    "dubbo": Registration("sofamesh.protocols.dubbo.support:DubboSupport", builds_on="h2"),
}

TCP_PROBE = "tcp"  # the health check every protocol has: the connection opens


def protocol_names() -> tuple[str, ...]:
    """Every protocol a listener or an endpoint may name."""
    return tuple(PROTOCOLS)


def support_class(name: str) -> Callable[..., ProtocolSupport]:
    """The `ProtocolSupport` class of `name` (KeyError if unknown), imported on first use."""
    module, _, attr = PROTOCOLS[name].support.partition(":")
    cls: Callable[..., ProtocolSupport] = getattr(importlib.import_module(module), attr)
    return cls


def _decision(name: str, attr: str) -> Any:
    """A protocol's decision, read from its class (see `protocols.base`)."""
    return getattr(support_class(name), attr)


def health_kinds() -> tuple[str, ...]:
    """The `upstream.health_check.kind` values: tcp, and each protocol that has a probe."""
    return (TCP_PROBE, *(n for n in PROTOCOLS if _decision(n, "health_probe") is not None))


def health_probe(kind: str) -> HealthProbe | None:
    """The probe of protocol `kind`, or None for `tcp` (the checker's own) and unknown kinds."""
    if kind not in PROTOCOLS:
        return None
    probe: HealthProbe | None = _decision(kind, "health_probe")
    return probe


def gateway_codes(name: str) -> frozenset[int]:
    """The codes of protocol `name` that mean a gateway got no answer; empty if unknown."""
    if name not in PROTOCOLS:
        return frozenset()
    codes: frozenset[int] = _decision(name, "gateway_codes")
    return codes


def callable_protocols() -> frozenset[str]:
    """The endpoint protocols some support can call: endpoints in others are not routable."""
    calls: set[str] = set()
    for name in PROTOCOLS:
        calls |= _decision(name, "endpoint_protocols")
    return frozenset(calls)


def make_protocols(policy: PolicyConfig, clock: Clock) -> dict[str, ProtocolSupport]:
    """One instance of every protocol, for one mesh process (each owns its pools)."""
    built: dict[str, ProtocolSupport] = {}
    for name, reg in PROTOCOLS.items():
        base = () if reg.builds_on is None else (built[reg.builds_on],)
        built[name] = support_class(name)(policy, clock, *base)
    return built


_BASE_NAMES = ("HealthProbe", "ProtocolSupport", "Route", "Server")
_SUPPORTS = {reg.support.rpartition(":")[2]: name for name, reg in PROTOCOLS.items()}


def __getattr__(name: str) -> Any:
    # The interface and the supports import config: they load on first use, so that
    # importing this registry (as config does) never imports config back.
    if name in _BASE_NAMES:
        return getattr(importlib.import_module("sofamesh.protocols.base"), name)
    if name in _SUPPORTS:
        return support_class(_SUPPORTS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PROTOCOLS",
    "BoltSupport",
    "GrpcSupport",
    "H2Support",
    "HealthProbe",
    "HttpSupport",
    "ProtocolSupport",
    "Registration",
    "Route",
    "Server",
    "callable_protocols",
    "gateway_codes",
    "health_kinds",
    "health_probe",
    "make_protocols",
    "protocol_names",
    "support_class",
]
