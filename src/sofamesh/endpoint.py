"""An endpoint: one reachable instance of a service, with its metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


def _freeze_tags(value: Any) -> frozenset[str]:
    return frozenset(value or ())


def _freeze_meta(value: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (value or {}).items()))


@attrs.frozen(slots=True, cache_hash=True)
class Endpoint:
    """Where a service can be called, and what a router may select it by.

    Identity (`key`) is service + protocol + address; metadata (version, zone,
    weight, tags, free-form `meta`) rides along for routing and balancing.
    """

    service: str
    host: str
    port: int
    protocol: str = "http"
    app: str = ""
    version: str = ""
    zone: str = ""
    weight: int = attrs.field(default=100)
    tags: frozenset[str] = attrs.field(default=frozenset(), converter=_freeze_tags)
    meta: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_freeze_meta)
    # Identity, computed once: balancers and detectors look it up on every call.
    key: str = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.service}|{self.protocol}|{self.host}:{self.port}")

    @weight.validator
    def _check_weight(self, _attr: Any, value: int) -> None:
        if not 0 <= value <= 10_000:
            raise ValueError(f"weight must be within 0..10000, got {value}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "app": self.app,
            "version": self.version,
            "zone": self.zone,
            "weight": self.weight,
            "tags": sorted(self.tags),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        return cls(
            service=str(data["service"]),
            host=str(data["host"]),
            port=int(data["port"]),
            protocol=str(data.get("protocol", "http")),
            app=str(data.get("app", "")),
            version=str(data.get("version", "")),
            zone=str(data.get("zone", "")),
            weight=int(data.get("weight", 100)),
            tags=data.get("tags", ()),
            meta=data.get("meta") or {},
        )
