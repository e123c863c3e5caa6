"""A stand-in for `MeshBridge` that writes down what an API asks of the mesh."""

from __future__ import annotations

from typing import Any

from sofamesh.config import Address
from sofamesh.config.model import RegistryApisConfig
from sofamesh.endpoint import Endpoint
from sofamesh.sidecar.registry_apis.book import Instance


class RecordingMesh:
    """What the APIs ask of the mesh, written down; one mesh service, `orders`, is empty."""

    def __init__(self, endpoints: tuple[Endpoint, ...] = ()) -> None:
        self.published: dict[str, Instance] = {}
        self.listed = endpoints  # what the registry lists for every service
        self.sidecar: Any = type("S", (), {"config": _Config()})()
        self.config = RegistryApisConfig()

    def check(self, inst: Instance) -> Instance:
        return inst

    async def publish(self, inst: Instance) -> None:
        if inst.serving:
            self.published[inst.service] = inst
        else:
            self.published.pop(inst.service, None)

    async def withdraw(self, inst: Instance) -> None:
        self.published.pop(inst.service, None)

    async def services(self) -> list[str]:
        return sorted(self.published)

    async def endpoints(self, service: str) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.listed if e.service == service)

    async def local_address(self, service: str) -> Address:
        return Address("127.0.0.1", 15001)


class _Config:
    local_api = type("L", (), {"max_lease": 300.0})()
