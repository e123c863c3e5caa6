"""The Eureka REST API (`/eureka/apps/...`) over the mesh.

| request | effect |
|---|---|
| `POST /eureka/apps/{APP}` | register: published as service `app` (lowercase, or the mesh's case) |
| `PUT /eureka/apps/{APP}/{ID}` | renew; 404 for an unknown instance (the client registers again) |
| `DELETE /eureka/apps/{APP}/{ID}` | cancel |
| `PUT /eureka/apps/{APP}/{ID}/status?value=S` | status override: only `UP` takes traffic |
| `DELETE /eureka/apps/{APP}/{ID}/status` | drop the override (back to `UP`) |
| `GET /eureka/apps`, `.../delta`, `.../{APP}`, `.../{APP}/{ID}`, `/instances/{ID}` | lookups |

Lookups list the mesh's endpoints of each service at this sidecar's port for
it (`mesh.MeshBridge.local_address`). A lease lasts the registration's
`leaseInfo.durationInSecs` (Eureka's 90 s default, or `eureka.lease`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, unquote

from sofamesh.clock import Clock
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.endpoint import Endpoint
from sofamesh.sidecar.guard import Refused
from sofamesh.sidecar.registry_apis import eureka_docs as docs
from sofamesh.sidecar.registry_apis import fields
from sofamesh.sidecar.registry_apis.book import Book, Instance
from sofamesh.sidecar.registry_apis.mesh import MeshBridge

log = logging.getLogger("sofamesh.registry_apis.eureka")

DEFAULT_LEASE = 90  # seconds: Eureka's LeaseInfo.DEFAULT_LEASE_DURATION
DEFAULT_RENEWAL = 30
DELTA_RETENTION = 180.0  # seconds a change stays in the delta (Eureka's 3 minutes)
MAX_CHANGES = 10_000


def _ms() -> int:
    return int(time.time() * 1000)


class EurekaApi:
    """The HTTP handler of the Eureka API on one sidecar."""

    def __init__(self, mesh: MeshBridge, book: Book, clock: Clock, lease: float | None) -> None:
        self.mesh = mesh
        self.book = book
        self.clock = clock
        self.lease = lease or DEFAULT_LEASE
        self.version = 0  # versions__delta
        self._seen: dict[tuple[str, str], dict[str, Any]] = {}
        self._changes: deque[tuple[float, dict[str, Any]]] = deque(maxlen=MAX_CHANGES)

    async def __call__(self, req: HttpRequest, _conn: object = None) -> HttpResponse:
        path, _, query = req.target.partition("?")
        parts = [unquote(p) for p in path.split("/") if p]
        while parts and parts[0] in ("eureka", "v2"):
            parts.pop(0)
        try:
            return await self._dispatch(req, parts, dict(parse_qsl(query)))
        except Refused as e:
            log.warning("eureka %s %s refused: %s", req.method, path[:200], e.reason)
            return HttpResponse(status=e.status, body=e.reason.encode())

    async def _dispatch(
        self, req: HttpRequest, parts: list[str], q: dict[str, str]
    ) -> HttpResponse:
        accept = (req.header(b"accept") or b"").decode("latin-1")
        method, n = req.method, len(parts)
        if n == 0 or parts[0] not in ("apps", "instances"):
            raise Refused(404, "not a Eureka resource")
        if parts[0] == "instances" and n == 2 and method == "GET":
            return await self._one_instance(None, parts[1], accept)
        if method == "GET" and n == 1:
            return _doc(await self._applications(), accept)
        if method == "GET" and parts[1] == "delta" and n == 2:
            return _doc(await self._delta(), accept)
        if method == "GET" and n == 2:
            return await self._one_app(parts[1], accept)
        if method == "GET" and n == 3:
            return await self._one_instance(parts[1], parts[2], accept)
        if method == "POST" and n == 2:
            return await self._register(parts[1], req)
        if n == 3 and method in ("PUT", "DELETE"):
            if method == "PUT":
                return await self._renew(parts[2], q)
            return await self._cancel(parts[2])
        if n == 4 and parts[3] == "status" and method in ("PUT", "DELETE"):
            value = q.get("value", "UP") if method == "PUT" else "UP"
            return await self._set_status(parts[2], value)
        raise Refused(405 if n <= 4 else 404, f"{method} is not served here")

    # -- registrations ----------------------------------------------------------------------

    async def _register(self, app: str, req: HttpRequest) -> HttpResponse:
        ctype = (req.header(b"content-type") or b"").decode("latin-1")
        try:
            doc = docs.registration(req.body, ctype, self.mesh.config.max_json_depth)
            inst = await self._instance(app, doc)
        except ValueError as e:
            raise Refused(400, f"bad registration: {e}") from None
        self.mesh.check(inst)
        old = self.book.put(inst, self.clock.now())
        if old is not None and old.service != inst.service:
            await self.mesh.withdraw(old)
        await self.mesh.publish(inst)
        log.info("eureka: registered %s/%s as %s", app, inst.instance_id, inst.service)
        return HttpResponse(status=204)

    async def _instance(self, app: str, doc: dict[str, Any]) -> Instance:
        raw_port = doc.get("port")
        port = fields.port(raw_port.get("$") if isinstance(raw_port, dict) else raw_port)
        lease_info = fields.mapping(doc.get("leaseInfo"), "leaseInfo")
        lease = fields.number(lease_info.get("durationInSecs"), "durationInSecs", self.lease)
        if not 0 < lease <= self.mesh.sidecar.config.local_api.max_lease:
            raise ValueError(f"durationInSecs must be within (0, local_api.max_lease], got {lease}")
        meta = fields.labels(doc.get("metadata"), "metadata")
        status = fields.text(doc.get("status"), "status") or "UP"
        iid = fields.text(doc.get("instanceId"), "instanceId")
        host = fields.text(doc.get("hostName"), "hostName")
        if not iid and not host:
            raise ValueError("a registration needs an instanceId or a hostName")
        iid = iid or f"{host}:{app}:{port}"
        renewal = fields.number(lease_info.get("renewalIntervalInSecs"), "renewal", DEFAULT_RENEWAL)
        now = _ms()
        return Instance(
            api="eureka",
            service=await self._service_of(app),
            instance_id=iid,
            upstream=Address(fields.text(doc.get("ipAddr"), "ipAddr") or "127.0.0.1", port),
            lease=lease,
            serving=status == "UP",
            status=status,
            labels={k: v for k, v in meta.items() if not k.startswith("@")},
            registered_ms=now,
            renewed_ms=now,
            doc={"app": app.upper(), "renewal": int(renewal)},
        )

    async def _service_of(self, app: str) -> str:
        """The mesh service of Eureka app `app`: a mesh service of that name in any case, else
        the name in lowercase (Eureka upper-cases app names; the mesh keeps a service's case)."""
        for name in await self.mesh.services():
            if name.upper() == app.upper():
                return name
        return app.lower()

    async def _renew(self, instance_id: str, q: dict[str, str]) -> HttpResponse:
        inst = self.book.renew("eureka", instance_id, self.clock.now())
        if inst is None:
            raise Refused(404, f"instance {instance_id} is not registered")
        inst.renewed_ms = _ms()
        await self.mesh.publish(inst)  # renews the sidecar's own lease on the publication
        return HttpResponse(status=200)

    async def _cancel(self, instance_id: str) -> HttpResponse:
        inst = self.book.remove("eureka", instance_id)
        if inst is None:
            raise Refused(404, f"instance {instance_id} is not registered")
        await self.mesh.withdraw(inst)
        return HttpResponse(status=200)

    async def _set_status(self, instance_id: str, value: str) -> HttpResponse:
        inst = self.book.get("eureka", instance_id)
        if inst is None:
            raise Refused(404, f"instance {instance_id} is not registered")
        inst.status, inst.serving = value, value == "UP"
        await self.mesh.publish(inst)
        return HttpResponse(status=200)

    # -- lookups ----------------------------------------------------------------------------

    async def _app_instances(self, service: str) -> list[dict[str, Any]]:
        addr = await self.mesh.local_address(service)
        if addr is None:
            return []
        app = service.upper()
        found = [self._listed(app, ep, addr) for ep in await self.mesh.endpoints(service)]
        ids = {d["instanceId"] for d in found}
        for inst in self.book.of("eureka", service):  # ours, before the registry echoes them
            if inst.instance_id not in ids:
                found.append(self._own(inst, addr))
        return found

    def _listed(self, app: str, ep: Endpoint, addr: Address) -> dict[str, Any]:
        """A mesh endpoint as an instance at `addr`; its id, Eureka's `host:app:port` form
        unless it has one, names the endpoint's own address, so ids stay distinct."""
        labels = dict(ep.meta)
        iid = labels.get("instance_id") or f"{ep.host}:{app.lower()}:{ep.port}"
        own = self.book.get("eureka", iid)
        if own is not None:
            return self._own(own, addr)
        labels.update({k: v for k, v in (("version", ep.version), ("zone", ep.zone)) if v})
        now = _ms()
        return docs.instance_doc(
            app=app, instance_id=iid, host=addr.host, port=addr.port, status="UP",
            metadata=labels, lease=(DEFAULT_RENEWAL, DEFAULT_LEASE), times_ms=(now, now),
        )  # fmt: skip

    def _own(self, inst: Instance, addr: Address) -> dict[str, Any]:
        return docs.instance_doc(
            app=inst.doc.get("app", inst.service.upper()), instance_id=inst.instance_id,
            host=addr.host, port=addr.port, status=inst.status, metadata=inst.labels,
            lease=(int(inst.doc.get("renewal", DEFAULT_RENEWAL)), int(inst.lease)),
            times_ms=(inst.registered_ms, inst.renewed_ms),
        )  # fmt: skip

    async def _all(self) -> dict[str, list[dict[str, Any]]]:
        apps: dict[str, list[dict[str, Any]]] = {}
        names = set(await self.mesh.services()) | {i.service for i in self.book.of("eureka")}
        for service in sorted(names):
            instances = await self._app_instances(service)
            if instances:
                apps[service.upper()] = instances
        self._record(apps)
        return apps

    async def _applications(self) -> dict[str, Any]:
        apps = await self._all()
        every = [i for insts in apps.values() for i in insts]
        return docs.applications_doc(apps, self.version, docs.hashcode(every))

    async def _delta(self) -> dict[str, Any]:
        apps = await self._all()
        every = [i for insts in apps.values() for i in insts]
        horizon = self.clock.now() - DELTA_RETENTION
        changed: dict[str, list[dict[str, Any]]] = {}
        for at, inst in self._changes:
            if at >= horizon:
                changed.setdefault(inst["app"], []).append(inst)
        return docs.applications_doc(changed, self.version, docs.hashcode(every))

    def _record(self, apps: dict[str, list[dict[str, Any]]]) -> None:
        """Note what changed since the last look, for `/apps/delta` (Eureka's recent queue)."""
        now = self.clock.now()
        current = {(i["app"], i["instanceId"]): i for insts in apps.values() for i in insts}
        for key, inst in current.items():
            old = self._seen.get(key)
            if old is None or old["status"] != inst["status"] or old["port"] != inst["port"]:
                self._changes.append(
                    (now, {**inst, "actionType": "ADDED" if old is None else "MODIFIED"})
                )
                self.version += 1
        for key, inst in self._seen.items():
            if key not in current:
                self._changes.append((now, {**inst, "actionType": "DELETED"}))
                self.version += 1
        self._seen = current

    async def _one_app(self, app: str, accept: str) -> HttpResponse:
        instances = await self._app_instances(await self._service_of(app))
        if not instances:
            raise Refused(404, f"application {app} is not known")
        return _doc(docs.application_doc(app.upper(), instances), accept)

    async def _one_instance(self, app: str | None, instance_id: str, accept: str) -> HttpResponse:
        apps = (
            await self._all()
            if app is None
            else {app: await self._app_instances(await self._service_of(app))}
        )
        for insts in apps.values():
            for inst in insts:
                if inst["instanceId"] == instance_id:
                    return _doc({"instance": inst}, accept)
        raise Refused(404, f"instance {instance_id} is not known")

    async def tick(self, now: float) -> None:
        """Nothing but leases lapses in Eureka (the book's sweep)."""

    async def lapse(self, inst: Instance) -> None:
        log.warning("eureka: lease of %s (%s) expired: evicted", inst.instance_id, inst.service)
        await self.mesh.withdraw(inst)


def _doc(doc: dict[str, Any], accept: str) -> HttpResponse:
    ctype, body = docs.render(doc, accept)
    return HttpResponse(status=200, headers=[(b"content-type", ctype)], body=body)
