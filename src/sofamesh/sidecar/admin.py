"""The admin API (Envoy's names) and the local API for SDKs in sidecar mode.

| request | answer |
|---|---|
| `GET /ready` | 200 `LIVE` once listeners serve; 503 while starting, draining or failed |
| `GET /stats` | JSON: counters, per-service and per-endpoint calls and latencies |
| `GET /stats/prometheus` | the same in Prometheus text format |
| `GET /clusters` | JSON: each service's endpoints, health and ejection state |
| `GET /config_dump` | JSON: the configuration in force |
| `POST /healthcheck/fail`, `POST /healthcheck/ok` | withdraw / restore this app's publications |
| `POST /quitquitquit` | drain and exit |
| `GET/POST /api/v1/...` | the local API (see `sofamesh.sdk.control`) |
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs

from sofamesh._version import __version__
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address

if TYPE_CHECKING:
    from sofamesh.sidecar.app import Sidecar

log = logging.getLogger("sofamesh.admin")

Route = Callable[["AdminApi", HttpRequest], Awaitable[HttpResponse]]


def _json(status: int, body: Any) -> HttpResponse:
    data = json.dumps(body, indent=2, default=str).encode() + b"\n"
    return HttpResponse(status=status, headers=[(b"content-type", b"application/json")], body=data)


def _text(status: int, body: str, ctype: bytes = b"text/plain; charset=utf-8") -> HttpResponse:
    return HttpResponse(status=status, headers=[(b"content-type", ctype)], body=body.encode())


def config_to_data(value: Any) -> Any:
    """A config as plain JSON-able data (addresses as host:port strings)."""
    return (
        attrs.asdict(
            value, value_serializer=lambda _i, _f, v: str(v) if isinstance(v, Address) else v
        )
        if attrs.has(type(value))
        else value
    )


class AdminApi:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self._routes: dict[tuple[str, str], Callable[[HttpRequest], Awaitable[HttpResponse]]] = {
            ("GET", "/ready"): self.ready,
            ("GET", "/stats"): self.stats,
            ("GET", "/stats/prometheus"): self.prometheus,
            ("GET", "/clusters"): self.clusters,
            ("GET", "/config_dump"): self.config_dump,
            ("POST", "/healthcheck/fail"): self.healthcheck_fail,
            ("POST", "/healthcheck/ok"): self.healthcheck_ok,
            ("POST", "/quitquitquit"): self.quit,
            ("GET", "/api/v1/info"): self.info,
            ("POST", "/api/v1/publish"): self.publish,
            ("POST", "/api/v1/unpublish"): self.unpublish,
            ("POST", "/api/v1/subscribe"): self.subscribe,
        }

    async def __call__(self, req: HttpRequest, _conn: object = None) -> HttpResponse:
        path = req.target.split("?", 1)[0]
        handler = self._routes.get((req.method, path))
        if handler is None:
            allowed = sorted(m for m, p in self._routes if p == path)
            if allowed:
                return _text(405, f"use {' or '.join(allowed)} for {path}\n")
            return _text(
                404,
                "unknown admin path; try " + ", ".join(sorted({p for _, p in self._routes})) + "\n",
            )
        try:
            return await handler(req)
        except (ValueError, KeyError, TypeError) as e:
            return _json(400, {"error": f"bad request: {e}"})

    async def ready(self, _req: HttpRequest) -> HttpResponse:
        s = self.sidecar
        if s.ready and s.healthy:
            return _text(200, "LIVE\n")
        state = "DRAINING" if s.draining else ("FAILED" if not s.healthy else "INITIALIZING")
        return _text(503, state + "\n")

    async def stats(self, _req: HttpRequest) -> HttpResponse:
        rt = self.sidecar.runtime
        return _json(200, {**rt.stats.as_dict(), "governance": rt.governance.snapshot()})

    async def prometheus(self, _req: HttpRequest) -> HttpResponse:
        rt = self.sidecar.runtime
        text = rt.stats.prometheus() + rt.governance.prometheus()
        return _text(200, text, b"text/plain; version=0.0.4")

    async def clusters(self, _req: HttpRequest) -> HttpResponse:
        rt = self.sidecar.runtime
        breakers = rt.governance.breaker_states()
        cm = rt.clusters
        items = (
            [
                {**c.describe(), "breakers": breakers.get(c.service, [])}
                for c in cm.clusters.values()
            ]
            if cm
            else []
        )
        return _json(200, {"clusters": sorted(items, key=lambda c: c["service"])})

    async def config_dump(self, _req: HttpRequest) -> HttpResponse:
        s = self.sidecar
        return _json(
            200,
            {
                "version": __version__,
                "started_at": s.started_at,
                "bound": {k: str(v) for k, v in s.bound.items()},
                "config": config_to_data(s.config),
                "rules": s.runtime.governance.status(),
                "registrations": [
                    {
                        "service": r.service,
                        "protocol": r.protocol,
                        "upstream": str(r.upstream),
                        "app": r.app,
                    }
                    for r in s.registrations.values()
                ],
            },
        )

    async def healthcheck_fail(self, _req: HttpRequest) -> HttpResponse:
        await self.sidecar.set_healthy(False)
        return _text(200, "OK\n")

    async def healthcheck_ok(self, _req: HttpRequest) -> HttpResponse:
        await self.sidecar.set_healthy(True)
        return _text(200, "OK\n")

    async def quit(self, _req: HttpRequest) -> HttpResponse:
        self.sidecar.stop()
        return _text(200, "OK\n")

    # -- local API for SDKs in sidecar mode -------------------------------------------------

    async def info(self, _req: HttpRequest) -> HttpResponse:
        s = self.sidecar
        return _json(
            200,
            {
                "app": s.config.app,
                "version": __version__,
                "inbound": [
                    {
                        "protocol": lc.protocol,
                        "listen": str(s.bound.get(f"inbound[{i}]", lc.listen)),
                    }
                    for i, lc in enumerate(s.config.inbound)
                ],
                "outbound": [
                    {
                        "protocol": lc.protocol,
                        "listen": str(s.bound.get(f"outbound[{i}]", lc.listen)),
                    }
                    for i, lc in enumerate(s.config.outbound)
                ],
            },
        )

    async def publish(self, req: HttpRequest) -> HttpResponse:
        body = json.loads(req.body)
        lease = float(body.get("lease", 10.0))
        ep = await self.sidecar.register(
            str(body["service"]),
            str(body.get("protocol", "http")),
            Address.parse(body["upstream"]),
            str(body.get("app", "")),
            lease,
        )
        return _json(200, {"published": ep.to_dict()})

    async def unpublish(self, req: HttpRequest) -> HttpResponse:
        body = json.loads(req.body)
        found = await self.sidecar.deregister(
            str(body["service"]), str(body.get("protocol", "http"))
        )
        return _json(200 if found else 404, {"unpublished": found})

    async def subscribe(self, req: HttpRequest) -> HttpResponse:
        body = json.loads(req.body)
        cm = self.sidecar.runtime.clusters
        assert cm is not None
        cluster = cm.get(str(body["service"]))
        return _json(200, {"service": cluster.service, "endpoints": len(cluster.endpoints)})
