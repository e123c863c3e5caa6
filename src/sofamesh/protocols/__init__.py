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
    """A protocol: where its support lives, and its decisions, declared here so that asking
    for them imports nothing (a test holds each equal to its class's attribute)."""

    support: str  # "module:Class" of its ProtocolSupport
    gateway_codes: frozenset[int]  # the codes of a gateway that got no answer
    endpoint_protocols: frozenset[str]  # the endpoint protocols its client calls
    enforces_deadline: bool  # its client gives up at the call's deadline itself
    alpn: tuple[str, ...]  # what its connections offer under mutual TLS
    health_probe: str | None = None  # "module:function" of its probe; None: TCP only
    builds_on: str | None = None  # a protocol registered before it, passed to its constructor
    lazy: bool = True  # loaded with the first connection or call (protocols/lazy.py)


_HTTP_ALPN = ("http/1.1",)  # transport.tls's ALPN_HTTP1 and ALPN_H2
_H2_ALPN = ("h2", "http/1.1")
_GATEWAY = frozenset({502, 503, 504})

# In dependency order: a protocol comes after the one it builds on. HTTP/1.1 loads at
# once (the admin API serves on its server); the others on first use, a protocol with
# those built on it (h2 with gRPC and Dubbo: they plug into its listeners).
PROTOCOLS: dict[str, Registration] = {
    "http": Registration(
        "sofamesh.protocols.http.support:HttpSupport", _GATEWAY, frozenset({"http"}), True,
        _HTTP_ALPN, "sofamesh.protocols.http.probe:http_probe", lazy=False,
    ),
    "h2": Registration(
        "sofamesh.protocols.h2.support:H2Support", _GATEWAY, frozenset({"h2"}), False, _H2_ALPN
    ),
    "grpc": Registration(
        "sofamesh.protocols.grpc.support:GrpcSupport", frozenset({14}), frozenset({"grpc"}),
        True, _H2_ALPN, builds_on="h2",
    ),
    "bolt": Registration(
        "sofamesh.protocols.bolt.support:BoltSupport", frozenset({0x0004}), frozenset({"bolt"}),
        True, (), "sofamesh.protocols.bolt.probe:bolt_probe",
    ),
    "dubbo": Registration(
        "sofamesh.protocols.dubbo.support:DubboSupport", frozenset({60, 100}),
        frozenset({"dubbo"}), True, (), "sofamesh.protocols.dubbo.probe:dubbo_probe",
        builds_on="h2",
    ),
}  # fmt: skip

TCP_PROBE = "tcp"  # the health check every protocol has: the connection opens


def protocol_names() -> tuple[str, ...]:
    """Every protocol a listener or an endpoint may name."""
    return tuple(PROTOCOLS)


def _imported(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def support_class(name: str) -> Callable[..., ProtocolSupport]:
    """The `ProtocolSupport` class of `name` (KeyError if unknown), imported on first use."""
    cls: Callable[..., ProtocolSupport] = _imported(PROTOCOLS[name].support)
    return cls


def health_kinds() -> tuple[str, ...]:
    """The `upstream.health_check.kind` values: tcp, and each protocol that has a probe."""
    return (TCP_PROBE, *(n for n, reg in PROTOCOLS.items() if reg.health_probe is not None))


def health_probe(kind: str) -> HealthProbe | None:
    """The probe of protocol `kind`, or None for `tcp` (the checker's own) and unknown kinds."""
    reg = PROTOCOLS.get(kind)
    if reg is None or reg.health_probe is None:
        return None
    probe: HealthProbe = _imported(reg.health_probe)
    return probe


def gateway_codes(name: str) -> frozenset[int]:
    """The codes of protocol `name` that mean a gateway got no answer; empty if unknown."""
    reg = PROTOCOLS.get(name)
    return frozenset() if reg is None else reg.gateway_codes


def callable_protocols() -> frozenset[str]:
    """The endpoint protocols some support can call: endpoints in others are not routable."""
    return frozenset().union(*(reg.endpoint_protocols for reg in PROTOCOLS.values()))


def family(name: str) -> tuple[str, ...]:
    """The protocols that load with `name`: the one it builds on, and those built on that."""
    root = PROTOCOLS[name].builds_on or name
    return tuple(n for n, reg in PROTOCOLS.items() if root in (n, reg.builds_on))


def make_protocols(
    policy: PolicyConfig, clock: Clock, names: tuple[str, ...] | None = None
) -> dict[str, ProtocolSupport]:
    """One instance of every protocol (or of `names`, in registry order, each after the one
    it builds on), for one mesh process (each owns its pools)."""
    built: dict[str, ProtocolSupport] = {}
    for name, reg in PROTOCOLS.items():
        if names is not None and name not in names:
            continue
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
    "family",
    "gateway_codes",
    "health_kinds",
    "health_probe",
    "make_protocols",
    "protocol_names",
    "support_class",
]
