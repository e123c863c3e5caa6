"""What Consul's reads answer, from the mesh and this agent's registrations; blocking indexes.

A mesh endpoint is listed as a service instance on this sidecar's port for the
service, with one passing check (`mesh`): the mesh lists only live endpoints.
This agent's own registrations are listed at once (before the registry
echoes them) and with their checks, so `?passing` leaves out the critical ones
as Consul does.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

import anyio

from sofamesh.config import Address
from sofamesh.endpoint import Endpoint
from sofamesh.sidecar.registry_apis.book import Book, Instance
from sofamesh.sidecar.registry_apis.consul_checks import Check
from sofamesh.sidecar.registry_apis.mesh import MeshBridge

DATACENTER = "dc1"


class Answers:
    """`X-Consul-Index` per query: it moves on when that query's answer changes."""

    def __init__(self, max_keys: int) -> None:
        self._last: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._max = max_keys
        self._index = 1
        self._changed = anyio.Event()

    def index(self, key: str, answer: Any) -> int:
        digest = hashlib.sha256(json.dumps(answer, sort_keys=True).encode()).hexdigest()
        last = self._last.get(key)
        if last is None or last[1] != digest:
            self._index += 1
            last = (self._index, digest)
            self._last[key] = last
            if len(self._last) > self._max:
                self._last.popitem(last=False)
        self._last.move_to_end(key)
        return last[0]

    def changed(self) -> None:
        """A registration here changed: wake the blocking queries at once."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_changed(self, poll: float) -> None:
        """Until a local change, or `poll` s (the mesh's changes are polled, not notified)."""
        with anyio.move_on_after(poll):
            await self._changed.wait()


class ConsulViews:
    def __init__(self, mesh: MeshBridge, book: Book, checks: dict[str, Check], node: str) -> None:
        self.mesh = mesh
        self.book = book
        self.checks = checks
        self.node = node

    def node_doc(self) -> dict[str, Any]:
        return {"ID": "", "Node": self.node, "Address": "127.0.0.1", "Datacenter": DATACENTER}

    def check_doc(self, check: Check) -> dict[str, Any]:
        inst = self.book.get("consul", check.service_id)
        return check.doc(self.node, inst.service if inst else "")

    def agent_services(self) -> dict[str, Any]:
        return {
            i.instance_id: self._service(i.instance_id, i.service, i.upstream, i.labels, i.doc)
            for i in self.book.of("consul")
        }

    def _service(
        self, sid: str, name: str, addr: Address, meta: dict[str, str], doc: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "ID": sid,
            "Service": name,
            "Tags": doc.get("tags", []),
            "Address": addr.host,
            "Port": addr.port,
            "Meta": meta,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False,
            "Datacenter": DATACENTER,
        }

    async def _instances(self, name: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(service, checks) of each instance of `name`, at this sidecar's port for it."""
        addr = await self.mesh.local_address(name)
        if addr is None:
            return []
        found = [self._listed(name, ep, addr) for ep in await self.mesh.endpoints(name)]
        ids = {svc["ID"] for svc, _ in found}
        for inst in self.book.of("consul", name):
            if inst.instance_id not in ids:  # the agent's own, before the mesh lists them
                found.append(self._own(inst, addr))
        return found

    def _listed(
        self, name: str, ep: Endpoint, addr: Address
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        meta = dict(ep.meta)
        own = self.book.get("consul", meta.get("instance_id", ""))
        if own is not None and own.service == name:
            return self._own(own, addr)
        meta.update({k: v for k, v in (("version", ep.version), ("zone", ep.zone)) if v})
        sid = meta.get("instance_id") or f"{name}-{ep.host}-{ep.port}"
        check = Check(f"mesh:{sid}", sid, "mesh endpoint", status="passing")
        return self._service(sid, name, addr, meta, {}), [check.doc(self.node, name)]

    def _own(self, inst: Instance, addr: Address) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        checks = [
            self.check_doc(c) for c in self.checks.values() if c.service_id == inst.instance_id
        ]
        svc = self._service(inst.instance_id, inst.service, addr, inst.labels, inst.doc)
        return svc, checks

    async def health(self, name: str, passing: bool) -> list[dict[str, Any]]:
        out = []
        for svc, checks in await self._instances(name):
            if passing and any(c["Status"] != "passing" for c in checks):
                continue
            out.append({"Node": self.node_doc(), "Service": svc, "Checks": checks})
        return out

    async def catalog(self, name: str) -> list[dict[str, Any]]:
        return [
            {
                "ID": "",
                "Node": self.node,
                "Address": "127.0.0.1",
                "Datacenter": DATACENTER,
                "ServiceID": svc["ID"],
                "ServiceName": name,
                "ServiceAddress": svc["Address"],
                "ServicePort": svc["Port"],
                "ServiceTags": svc["Tags"],
                "ServiceMeta": svc["Meta"],
            }
            for svc, _ in await self._instances(name)
        ]

    async def catalog_services(self) -> dict[str, list[str]]:
        names = set(await self.mesh.services()) | {i.service for i in self.book.of("consul")}
        tags = {i.service: i.doc.get("tags", []) for i in self.book.of("consul")}
        return {"consul": [], **{n: tags.get(n, []) for n in sorted(names)}}
