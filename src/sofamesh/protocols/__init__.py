"""Protocols the mesh carries, each a `ProtocolSupport` registered here by name."""

from __future__ import annotations

from sofamesh.clock import Clock
from sofamesh.config.model import PolicyConfig
from sofamesh.protocols.base import ProtocolSupport, Route, Server
from sofamesh.protocols.bolt.support import BoltSupport
from sofamesh.protocols.grpc.support import GrpcSupport
from sofamesh.protocols.h2.support import H2Support
from sofamesh.protocols.http.support import HttpSupport


def make_protocols(policy: PolicyConfig, clock: Clock) -> dict[str, ProtocolSupport]:
    """One instance of every protocol, for one mesh process (each owns its pools)."""
    grpc = GrpcSupport(policy, clock)
    return {
        "http": HttpSupport(policy, clock),
        "grpc": grpc,
        "h2": H2Support(policy, clock, grpc),
        "bolt": BoltSupport(policy, clock),
    }


__all__ = [
    "BoltSupport",
    "GrpcSupport",
    "H2Support",
    "HttpSupport",
    "ProtocolSupport",
    "Route",
    "Server",
    "make_protocols",
]
