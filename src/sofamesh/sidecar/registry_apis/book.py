"""The instances apps registered through a registry API, and their leases (sans-IO).

Every API (Eureka, Consul, Nacos) keeps its registrations here: an instance lives
while its app renews it (Eureka's renew, Consul's TTL check pass, Nacos's beat)
and lapses `lease` seconds after the last renewal, as the original registry
evicts it. The book takes `now` from its caller, so tests drive leases with a
fake clock; the owner (`registry_apis.serve_registry_apis`) sweeps it.
"""

from __future__ import annotations

from typing import Any

import attrs

from sofamesh.config import Address
from sofamesh.sidecar.guard import Refused


class BookFull(Refused):
    """`max_instances` registrations are live: a new one is refused (429, as a limit)."""

    def __init__(self, reason: str) -> None:
        super().__init__(429, reason)


@attrs.define
class Instance:
    """One registration: the app at `upstream`, published as `service` through the mesh."""

    api: str  # "eureka", "consul" or "nacos"
    service: str  # the mesh service name
    instance_id: str
    upstream: Address  # where the app itself listens
    lease: float  # seconds from the last renewal to lapse
    expires: float = 0.0
    serving: bool = True  # takes traffic (Eureka UP, Consul passing, Nacos healthy)
    status: str = "UP"  # the API's own word for the state
    labels: dict[str, str] = attrs.field(factory=dict)  # version, zone, metadata
    registered_ms: int = 0  # wall clock, as the APIs report it
    renewed_ms: int = 0
    doc: dict[str, Any] = attrs.field(factory=dict)  # the API's own fields, echoed on reads


class Book:
    """Registrations by (api, instance id); `lapsed(now)` takes out the expired ones."""

    def __init__(self, max_instances: int) -> None:
        self.max_instances = max_instances
        self.instances: dict[tuple[str, str], Instance] = {}

    def put(self, inst: Instance, now: float) -> Instance | None:
        """Register (or re-register) `inst`; returns the one it replaces, if any."""
        key = (inst.api, inst.instance_id)
        old = self.instances.get(key)
        if old is None and len(self.instances) >= self.max_instances:
            raise BookFull(f"{self.max_instances} instances registered (max_instances)")
        inst.expires = now + inst.lease
        self.instances[key] = inst
        return old

    def get(self, api: str, instance_id: str) -> Instance | None:
        return self.instances.get((api, instance_id))

    def renew(self, api: str, instance_id: str, now: float) -> Instance | None:
        inst = self.instances.get((api, instance_id))
        if inst is not None:
            inst.expires = now + inst.lease
        return inst

    def remove(self, api: str, instance_id: str) -> Instance | None:
        return self.instances.pop((api, instance_id), None)

    def of(self, api: str, service: str | None = None) -> list[Instance]:
        return [
            i
            for (a, _), i in self.instances.items()
            if a == api and (service is None or i.service == service)
        ]

    def lapsed(self, now: float) -> list[Instance]:
        """Remove and return every instance whose lease ran out before `now`."""
        gone = [i for i in self.instances.values() if i.expires < now]
        for inst in gone:
            del self.instances[(inst.api, inst.instance_id)]
        return gone
