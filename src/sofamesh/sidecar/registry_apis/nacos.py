"""The Nacos naming open API v1 over the mesh (`/nacos/v1/ns/...`).

| request | effect |
|---|---|
| `POST /nacos/v1/ns/instance` | register: service `name` (`group@@name` outside `DEFAULT_GROUP`) |
| `PUT /nacos/v1/ns/instance` | modify: `enabled=false` withdraws it, metadata and weight change |
| `DELETE /nacos/v1/ns/instance` | deregister |
| `PUT /nacos/v1/ns/instance/beat` | heartbeat; code 20404 if unknown (the client registers again) |
| `GET /nacos/v1/ns/instance/list` | instances (`healthyOnly`), at this sidecar's port for it |
| `GET /nacos/v1/ns/service/list` | service names, paged |

An ephemeral instance turns unhealthy (and leaves the mesh) `lease` seconds
after its last beat (Nacos's 15 s) and is deleted after `delete_after` (30 s).
Only the default (`public`) namespace is served.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from sofamesh.clock import Clock
from sofamesh.codecs import jsondoc
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.endpoint import Endpoint
from sofamesh.sidecar.guard import Refused
from sofamesh.sidecar.registry_apis import fields
from sofamesh.sidecar.registry_apis.book import Book, Instance
from sofamesh.sidecar.registry_apis.mesh import MeshBridge

log = logging.getLogger("sofamesh.registry_apis.nacos")

GROUP = "DEFAULT_GROUP"
CLUSTER = "DEFAULT"
BEAT_INTERVAL = 5.0
BEAT_TIMEOUT = 15.0
OK, NOT_FOUND = 10200, 20404  # Nacos's beat answer codes


class NacosApi:
    def __init__(
        self, mesh: MeshBridge, book: Book, clock: Clock, lease: float | None, delete_after: float
    ) -> None:
        self.mesh = mesh
        self.book = book
        self.clock = clock
        self.beat_timeout = lease or BEAT_TIMEOUT
        self.delete_after = max(delete_after, self.beat_timeout)
        self.max_depth = mesh.config.max_json_depth

    async def __call__(self, req: HttpRequest, _conn: object = None) -> HttpResponse:
        path, _, query = req.target.partition("?")
        q = dict(parse_qsl(query, keep_blank_values=True))
        q.update(parse_qsl(req.body.decode("latin-1"), keep_blank_values=True))  # form posts
        try:
            if q.get("namespaceId", "public") not in ("", "public"):
                raise Refused(400, "only the public namespace is served here")
            return await self._dispatch(req.method, path.rstrip("/"), q)
        except Refused as e:
            log.warning("nacos %s %s refused: %s", req.method, path[:200], e.reason)
            return HttpResponse(status=e.status, body=e.reason.encode())
        except (ValueError, KeyError) as e:
            log.warning("nacos %s %s refused: %s", req.method, path[:200], e)
            return HttpResponse(status=400, body=f"bad request: {e}".encode())

    async def _dispatch(self, method: str, path: str, q: dict[str, str]) -> HttpResponse:
        base = "/nacos/v1/ns"
        if path == f"{base}/instance" and method == "POST":
            return await self._register(q)
        if path == f"{base}/instance" and method == "PUT":
            return await self._modify(q)
        if path == f"{base}/instance" and method == "DELETE":
            return await self._deregister(q)
        if path == f"{base}/instance/beat" and method == "PUT":
            return await self._beat(q)
        if path == f"{base}/instance/list" and method == "GET":
            return _json(await self._list(q))
        if path == f"{base}/service/list" and method == "GET":
            return _json(await self._services(q))
        raise Refused(404, f"{method} {path} is not served here")

    # -- registrations ----------------------------------------------------------------------

    def _names(self, q: dict[str, str]) -> tuple[str, str]:
        """(group, name) of a request: `serviceName` may carry the group as `group@@name`."""
        raw = q["serviceName"]
        group, sep, name = raw.partition("@@")
        if not sep:
            group, name = q.get("groupName") or GROUP, raw
        return group, name

    def _json(self, q: dict[str, str], name: str) -> Any:
        """A form field holding JSON (`metadata`, `beat`), within the APIs' limits."""
        if not q.get(name):
            return None
        return jsondoc.loads(q[name], max_bytes=len(q[name]), max_depth=self.max_depth)

    def _service(self, group: str, name: str) -> str:
        return name if group == GROUP else f"{group}@@{name}"

    def _id(self, q: dict[str, str], ip: str, port: int) -> str:
        """The book's key: the address in the service. Not the cluster: clients disagree on
        it between a registration and its beats (nacos-sdk-python sends `None` on one)."""
        group, name = self._names(q)
        return f"{ip}#{port}#{group}@@{name}"

    async def _register(self, q: dict[str, str]) -> HttpResponse:
        ip, port = q["ip"], fields.port(q["port"])
        group, name = self._names(q)
        ephemeral = q.get("ephemeral", "true").lower() != "false"
        meta = self._json(q, "metadata")
        inst = Instance(
            api="nacos",
            service=self._service(group, name),
            instance_id=self._id(q, ip, port),
            upstream=Address(ip, port),
            lease=self.delete_after if ephemeral else float("inf"),
            serving=q.get("enable", "true").lower() != "false",
            labels=fields.labels(meta, "metadata"),
            doc={
                "weight": fields.number(q.get("weight"), "weight", 1.0),
                "ephemeral": ephemeral,
                "cluster": q.get("clusterName") or CLUSTER,
            },
        )
        inst.doc["beat"] = self.clock.now()
        self.mesh.check(inst)
        self.book.put(inst, self.clock.now())
        await self.mesh.publish(inst)
        log.info("nacos: registered %s as %s", inst.instance_id, inst.service)
        return _text("ok")

    async def _modify(self, q: dict[str, str]) -> HttpResponse:
        inst = self.book.get("nacos", self._id(q, q["ip"], fields.port(q["port"])))
        if inst is None:
            raise Refused(404, "instance not found")
        if "enabled" in q or "enable" in q:
            inst.serving = (q.get("enabled") or q.get("enable", "true")).lower() != "false"
        if q.get("metadata"):
            inst.labels = fields.labels(self._json(q, "metadata"), "metadata")
        if q.get("weight"):
            inst.doc["weight"] = fields.number(q["weight"], "weight", 1.0)
        await self.mesh.publish(inst)
        return _text("ok")

    async def _deregister(self, q: dict[str, str]) -> HttpResponse:
        inst = self.book.remove("nacos", self._id(q, q["ip"], fields.port(q["port"])))
        if inst is not None:
            await self.mesh.withdraw(inst)
        return _text("ok")  # Nacos answers ok for an unknown instance too

    async def _beat(self, q: dict[str, str]) -> HttpResponse:
        beat = fields.mapping(self._json(q, "beat"), "beat")
        service = fields.text(beat.get("serviceName"), "beat.serviceName") or q["serviceName"]
        q = {**q, "serviceName": service}
        now = self.clock.now()
        iid = self._id(
            q, fields.text(beat["ip"], "beat.ip"), fields.port(beat["port"], "beat.port")
        )
        inst = self.book.renew("nacos", iid, now)
        if inst is None:
            return _json({"code": NOT_FOUND})
        inst.doc["beat"] = now
        if inst.status == "UNHEALTHY":  # back within the delete timeout: healthy again
            inst.status, inst.serving = "UP", True
        await self.mesh.publish(inst)
        interval = int(BEAT_INTERVAL * 1000)
        return _json({"clientBeatInterval": interval, "code": OK, "lightBeatEnabled": False})

    async def tick(self, now: float) -> None:
        """An instance not heard from for the beat timeout turns unhealthy (Nacos's checker)."""
        for inst in self.book.of("nacos"):
            late = inst.doc["ephemeral"] and now - inst.doc["beat"] > self.beat_timeout
            if late and inst.status != "UNHEALTHY":
                log.warning("nacos: no beat from %s: unhealthy", inst.instance_id)
                inst.status, inst.serving = "UNHEALTHY", False
                await self.mesh.withdraw(inst)

    async def lapse(self, inst: Instance) -> None:
        log.warning("nacos: %s deleted after %gs without a beat", inst.instance_id, inst.lease)
        await self.mesh.withdraw(inst)

    # -- lookups ----------------------------------------------------------------------------

    async def _list(self, q: dict[str, str]) -> dict[str, Any]:
        group, name = self._names(q)
        service = self._service(group, name)
        healthy_only = q.get("healthyOnly", "false").lower() == "true"
        full = f"{group}@@{name}"
        hosts = []
        addr = await self.mesh.local_address(service)
        if addr is not None:
            eps = await self.mesh.endpoints(service)
            hosts = [self._host(full, ep, addr) for ep in eps]
            listed = {dict(ep.meta).get("instance_id") for ep in eps}
            for inst in self.book.of("nacos", service):  # ours, before the registry echoes them
                if inst.instance_id not in listed:
                    hosts.append(self._own(full, inst, addr))
        if healthy_only:
            hosts = [h for h in hosts if h["healthy"]]
        return {
            "name": full, "groupName": group, "clusters": q.get("clusters", ""),
            "cacheMillis": 3000, "hosts": hosts, "lastRefTime": 0, "checksum": "",
            "allIPs": False, "reachProtectionThreshold": False, "valid": True,
        }  # fmt: skip

    def _host(self, full: str, ep: Endpoint, addr: Address) -> dict[str, Any]:
        meta = dict(ep.meta)
        own = self.book.get("nacos", meta.get("instance_id", ""))
        if own is not None:
            return self._own(full, own, addr)
        meta.update({k: v for k, v in (("version", ep.version), ("zone", ep.zone)) if v})
        iid = meta.get("instance_id") or f"{ep.host}#{ep.port}#{CLUSTER}#{full}"
        return _host_doc(full, iid, addr, meta, ep.weight / 100, healthy=True, enabled=True)

    def _own(self, full: str, inst: Instance, addr: Address) -> dict[str, Any]:
        healthy = inst.status != "UNHEALTHY"
        weight = float(inst.doc.get("weight", 1.0))
        ip, port, _ = inst.instance_id.split("#", 2)
        iid = f"{ip}#{port}#{inst.doc['cluster']}#{full}"  # Nacos's instance id
        return _host_doc(full, iid, addr, inst.labels, weight, healthy, inst.serving)

    async def _services(self, q: dict[str, str]) -> dict[str, Any]:
        group = q.get("groupName") or GROUP
        names = set(await self.mesh.services()) | {i.service for i in self.book.of("nacos")}
        if group == GROUP:
            mine = sorted(n for n in names if "@@" not in n)
        else:
            mine = sorted(n.split("@@", 1)[1] for n in names if n.startswith(f"{group}@@"))
        page = max(int(fields.number(q.get("pageNo"), "pageNo", 1)), 1)
        size = max(int(fields.number(q.get("pageSize"), "pageSize", 10)), 1)
        return {"count": len(mine), "doms": mine[(page - 1) * size : page * size]}


def _host_doc(
    full: str, iid: str, addr: Address, meta: dict[str, str], weight: float, healthy: bool,
    enabled: bool,
) -> dict[str, Any]:  # fmt: skip
    return {
        "instanceId": iid, "ip": addr.host, "port": addr.port, "weight": weight,
        "healthy": healthy, "enabled": enabled, "ephemeral": True, "clusterName": CLUSTER,
        "serviceName": full, "metadata": meta, "instanceHeartBeatInterval": 5000,
        "instanceIdGenerator": "simple", "instanceHeartBeatTimeOut": 15000,
        "ipDeleteTimeout": 30000,
    }  # fmt: skip


def _json(doc: Any) -> HttpResponse:
    body = json.dumps(doc).encode()
    return HttpResponse(status=200, headers=[(b"content-type", b"application/json")], body=body)


def _text(text: str) -> HttpResponse:
    return HttpResponse(status=200, headers=[(b"content-type", b"text/plain")], body=text.encode())
