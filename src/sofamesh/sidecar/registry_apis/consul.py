"""The Consul agent, catalog and health HTTP API over the mesh (`/v1/...`).

| request | effect |
|---|---|
| `PUT /v1/agent/service/register` | publish the service, with its TTL and HTTP checks |
| `PUT /v1/agent/service/deregister/{id}` | withdraw it and its checks |
| `PUT /v1/agent/check/pass,warn,fail/{id}`, `PUT .../update/{id}` | set a check |
| `GET /v1/agent/services`, `/v1/agent/checks` | this agent's (sidecar's) registrations |
| `GET /v1/health/service/{name}` (`?passing`) | instances with their checks |
| `GET /v1/catalog/services`, `/v1/catalog/service/{name}` | the catalog |
| `GET /v1/status/leader` | this agent, so clients that ask find a leader |

Reads take Consul's blocking-query parameters: with `?index=N` (the
`X-Consul-Index` of an earlier answer) the request waits until the answer
changes or `wait` passes (default 5 m, at most 10 m). Instances are listed at
this sidecar's port for their service (`mesh.MeshBridge.local_address`).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import anyio.abc

from sofamesh.clock import Clock
from sofamesh.codecs import jsondoc
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.config.local_api import allows_upstream
from sofamesh.sidecar.guard import Refused
from sofamesh.sidecar.registry_apis import consul_checks as cc
from sofamesh.sidecar.registry_apis import fields
from sofamesh.sidecar.registry_apis.book import Book, Instance
from sofamesh.sidecar.registry_apis.consul_views import Answers, ConsulViews
from sofamesh.sidecar.registry_apis.mesh import MeshBridge
from sofamesh.sidecar.registry_apis.probe import http_get_status

log = logging.getLogger("sofamesh.registry_apis.consul")

FOREVER = float("inf")  # a Consul service stays until deregistered (or critical too long)


class ConsulApi:
    """The HTTP handler of the Consul API on one sidecar."""

    def __init__(self, mesh: MeshBridge, book: Book, clock: Clock, tg: anyio.abc.TaskGroup) -> None:
        self.mesh = mesh
        self.book = book
        self.clock = clock
        self._tg = tg
        self.checks: dict[str, cc.Check] = {}
        self._probes: dict[str, anyio.CancelScope] = {}
        self.answers = Answers(max_keys=4 * mesh.config.max_services)
        self.views = ConsulViews(mesh, book, self.checks, mesh.sidecar.config.app)

    async def __call__(self, req: HttpRequest, _conn: object = None) -> HttpResponse:
        path, _, query = req.target.partition("?")
        parts = [unquote(p) for p in path.split("/") if p]
        q = dict(parse_qsl(query, keep_blank_values=True))
        try:
            return await self._dispatch(req, parts[1:] if parts[:1] == ["v1"] else [], q)
        except Refused as e:
            log.warning("consul %s %s refused: %s", req.method, path[:200], e.reason)
            return HttpResponse(status=e.status, body=e.reason.encode())
        except ValueError as e:
            log.warning("consul %s %s refused: %s", req.method, path[:200], e)
            return HttpResponse(status=400, body=str(e).encode())

    async def _dispatch(self, req: HttpRequest, p: list[str], q: dict[str, str]) -> HttpResponse:
        m = req.method
        if m == "PUT" and p[:3] == ["agent", "service", "register"]:
            return await self._register(_body(req, self.mesh.config.max_json_depth))
        if m == "PUT" and p[:3] == ["agent", "service", "deregister"] and len(p) == 4:
            return await self._deregister(p[3])
        if m == "PUT" and p[:2] == ["agent", "check"] and len(p) == 4:
            return await self._check(p[2], p[3], q, req)
        if m != "GET":
            raise Refused(405 if p else 404, f"{m} /v1/{'/'.join(p)} is not served here")
        if p == ["status", "leader"]:
            return _json(f"{self.mesh.sidecar.config.app}:8300", None)
        if p == ["agent", "services"]:
            return _json(self.views.agent_services(), None)
        if p == ["agent", "checks"]:
            return _json({c.check_id: self.views.check_doc(c) for c in self.checks.values()}, None)
        if p == ["catalog", "services"]:
            return await self._blocking("/catalog/services", q, self.views.catalog_services)
        if len(p) == 3 and p[:2] == ["catalog", "service"]:
            return await self._blocking(f"/catalog/{p[2]}", q, lambda: self.views.catalog(p[2]))
        if len(p) == 3 and p[:2] == ["health", "service"]:
            passing = "passing" in q and q["passing"] not in ("0", "false")
            key = f"/health/{p[2]}?{passing}"
            return await self._blocking(key, q, lambda: self.views.health(p[2], passing))
        raise Refused(404, f"/v1/{'/'.join(p)} is not served here")

    # -- registrations ----------------------------------------------------------------------

    async def _register(self, body: dict[str, Any]) -> HttpResponse:
        name = fields.text(_field(body, "name"), "Name")
        if not name:
            raise ValueError("a service registration needs a Name")
        sid = fields.text(_field(body, "id"), "ID") or name
        now = self.clock.now()
        checks = cc.checks_of(sid, body, now)
        for check in checks:
            if check.http is not None:
                self._allowed_probe(check.http)
        inst = self.mesh.check(self._instance(name, sid, body))
        old = self.book.put(inst, now)
        if old is not None:
            await self._drop_checks(sid)
            if old.service != inst.service:
                await self.mesh.withdraw(old)
        for check in checks:
            self.checks[check.check_id] = check
            if check.http is not None:
                self._probes[check.check_id] = self._start_probe(check)
        await self._update(inst)
        log.info("consul: registered %s as %s", sid, name)
        return HttpResponse(status=200)

    def _instance(self, name: str, sid: str, body: dict[str, Any]) -> Instance:
        host = fields.text(_field(body, "address"), "Address") or "127.0.0.1"
        return Instance(
            api="consul",
            service=name,
            instance_id=sid,
            upstream=Address(host, fields.port(_field(body, "port"), "Port")),
            lease=FOREVER,
            labels=fields.labels(_field(body, "meta"), "Meta"),
            doc={"tags": fields.strings(_field(body, "tags"), "Tags")},
        )

    def _allowed_probe(self, url: str) -> None:
        addr = _url_address(url)
        if not allows_upstream(self.mesh.sidecar.config.local_api, addr):
            raise Refused(403, f"HTTP check {url}: {addr} is neither loopback nor allowed")

    async def _deregister(self, sid: str) -> HttpResponse:
        inst = self.book.remove("consul", sid)
        if inst is None:
            raise Refused(404, f"Unknown service ID {sid!r}")
        await self._drop_checks(sid)
        await self.mesh.withdraw(inst)
        self.answers.changed()
        return HttpResponse(status=200)

    async def _drop_checks(self, sid: str) -> None:
        for cid in [c for c, check in self.checks.items() if check.service_id == sid]:
            del self.checks[cid]
            scope = self._probes.pop(cid, None)
            if scope is not None:
                scope.cancel()

    async def _check(
        self, verb: str, cid: str, q: dict[str, str], req: HttpRequest
    ) -> HttpResponse:
        check = self.checks.get(cid)
        if check is None:
            raise Refused(404, f"Unknown check ID {cid!r}")
        if check.ttl is None:
            raise Refused(400, f"check {cid!r} is not a TTL check")
        words = {"pass": "passing", "warn": "warning", "fail": "critical"}
        if verb == "update":
            body = _body(req, self.mesh.config.max_json_depth)
            status = fields.text(_field(body, "status"), "Status")
            output = fields.text(_field(body, "output"), "Output")
        elif verb in words:
            status, output = words[verb], q.get("note", "")
        else:
            raise Refused(404, f"/v1/agent/check/{verb} is not served here")
        check.set(status, output, self.clock.now())
        inst = self.book.get("consul", check.service_id)
        if inst is not None:
            await self._update(inst)
        return HttpResponse(status=200)

    async def _update(self, inst: Instance) -> None:
        """Publish `inst` while none of its checks is critical; withdraw it otherwise."""
        mine = [c for c in self.checks.values() if c.service_id == inst.instance_id]
        inst.serving = all(c.status != "critical" for c in mine)
        inst.status = "passing" if inst.serving else "critical"
        inst.doc["published"] = self.clock.now()
        await self.mesh.publish(inst)
        self.answers.changed()

    # -- health, over time ------------------------------------------------------------------

    async def tick(self, now: float) -> None:
        """TTLs lapse; services critical past DeregisterCriticalServiceAfter go; the others'
        publications are renewed (a Consul service has no lease: it stays until deregistered)."""
        renew = self.mesh.sidecar.config.local_api.max_lease / 3
        for live in self.book.of("consul"):
            if live.serving and now - live.doc.get("published", now) >= renew:
                live.doc["published"] = now
                await self.mesh.publish(live)
        for check in list(self.checks.values()):
            inst = self.book.get("consul", check.service_id)
            if check.lapse(now) and inst is not None:
                log.warning(
                    "consul: TTL of check %s expired: %s critical", check.check_id, inst.service
                )
                await self._update(inst)
            after, since = check.deregister_after, check.critical_since
            if after is not None and since is not None and now - since >= after and inst:
                await self._deregister(inst.instance_id)

    async def lapse(self, inst: Instance) -> None:  # Consul services have no lease of their own
        await self.mesh.withdraw(inst)

    def _start_probe(self, check: cc.Check) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        self._tg.start_soon(self._probe, check, scope)
        return scope

    async def _probe(self, check: cc.Check, scope: anyio.CancelScope) -> None:
        assert check.http is not None
        with scope:
            while True:
                code = await http_get_status(check.http, timeout=min(check.interval, 10.0))
                status = cc.http_status(code) if code else "critical"
                if status != check.status:
                    check.set(
                        status, f"HTTP GET {check.http}: {code or 'no answer'}", self.clock.now()
                    )
                    inst = self.book.get("consul", check.service_id)
                    if inst is not None:
                        await self._update(inst)
                await anyio.sleep(check.interval)

    # -- blocking queries -------------------------------------------------------------------

    async def _blocking(self, key: str, q: dict[str, str], read: Any) -> HttpResponse:
        after = int(q["index"]) if q.get("index", "").isdigit() else 0
        wait = min(cc.duration(q["wait"]), 600.0) if q.get("wait") else 300.0
        answer = await read()
        index = self.answers.index(key, answer)
        if after and index <= after:
            with anyio.move_on_after(wait):
                while index <= after:
                    await self.answers.wait_changed(poll=0.1)
                    answer = await read()
                    index = self.answers.index(key, answer)
        return _json(answer, index)


def _field(d: dict[str, Any], name: str) -> Any:
    lower = name.lower()
    return next((v for k, v in d.items() if k.lower() == lower), None)


def _body(req: HttpRequest, max_depth: int) -> dict[str, Any]:
    body = jsondoc.loads(req.body or b"{}", max_bytes=len(req.body), max_depth=max_depth)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _url_address(url: str) -> Address:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return Address(host.strip("[]") or rest, int(port) if port.isdigit() else 80)


def _json(doc: Any, index: int | None) -> HttpResponse:
    headers = [(b"content-type", b"application/json")]
    if index is not None:
        headers += [(b"x-consul-index", str(index).encode()), (b"x-consul-knownleader", b"true")]
    return HttpResponse(status=200, headers=headers, body=json.dumps(doc).encode())
