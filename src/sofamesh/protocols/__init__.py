"""Protocols the mesh carries, each a `ProtocolSupport` registered here by name."""

from __future__ import annotations

from sofamesh.clock import Clock
from sofamesh.config.model import PolicyConfig
from sofamesh.protocols.base import ProtocolSupport, Route, Server
from sofamesh.protocols.http import HttpSupport


def make_protocols(policy: PolicyConfig, clock: Clock) -> dict[str, ProtocolSupport]:
    """One instance of every protocol, for one mesh process (each owns its pools)."""
    return {"http": HttpSupport(policy, clock)}


__all__ = ["HttpSupport", "ProtocolSupport", "Route", "Server", "make_protocols"]
