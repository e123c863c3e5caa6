"""The admin API (Envoy's names) and the local API for SDKs in sidecar mode.

| request | answer |
|---|---|
| `GET /ready` | 200 `LIVE` once listeners serve; 503 while starting, draining or failed |
| `GET /server_info` | JSON: version, state, uptime, node |
| `GET /listeners` | each listener's name and bound address (`?format=json`: protocol, direction) |
| `GET /stats` | JSON: counters, calls, latencies, connections per listener (`?filter=REGEX`) |
| `GET /stats/prometheus` | the same in Prometheus text format, or OpenMetrics when asked |
| `GET /clusters` | JSON: each service's endpoints, health and ejection state |
| `GET /config_dump` | JSON: the configuration in force |
| `POST /logging` | list loggers; `?level=L` sets every one, `?name=L` one |
| `POST /reset_counters` | counters and histograms to zero |
| `POST /healthcheck/fail`, `POST /healthcheck/ok` | withdraw / restore this app's publications |
| `POST /quitquitquit` | drain and exit |
| `GET/POST /api/v1/...` | the local API (see `sofamesh.sdk.control`), with the sidecar's token |

Every POST needs `Content-Type: application/json`, and no request may come from
another origin (`sofamesh.sidecar.guard`); refusals are 400/403 and a log line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import attrs

from sofamesh._version import __version__
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.governance.filters.metrics import families as governance_families
from sofamesh.observability.rule_metrics import rule_families
from sofamesh.sidecar import guard
from sofamesh.sidecar.admin_stats import families as connection_families
from sofamesh.sidecar.admin_stats import listener_rows, upstream_rows
from sofamesh.sidecar.guard import Refused
from sofamesh.sidecar.local_api import json_body, publication
from sofamesh.sidecar.log_levels import log_level
from sofamesh.stats import Family, Match, Stats, name_filter, render

if TYPE_CHECKING:
    from sofamesh.runtime import Runtime
    from sofamesh.sidecar.app import Sidecar

log = logging.getLogger("sofamesh.admin")

Route = Callable[["AdminApi", HttpRequest], Awaitable[HttpResponse]]

OPENMETRICS = b"application/openmetrics-text; version=1.0.0; charset=utf-8"


def _query(req: HttpRequest) -> dict[str, str]:
    return dict(parse_qsl(req.target.partition("?")[2], keep_blank_values=True))


def json_response(status: int, body: Any) -> HttpResponse:
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
            ("GET", "/server_info"): self.server_info,
            ("GET", "/listeners"): self.listeners,
            ("POST", "/logging"): self.logging,
            ("POST", "/reset_counters"): self.reset_counters,
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

    async def __call__(self, req: HttpRequest, conn: object = None) -> HttpResponse:
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
            guard.check(req, path, self.sidecar.bound.get("admin"), self.sidecar.token)
            return await handler(req)
        except Refused as e:
            peer = getattr(conn, "peer", None) or "?"
            log.warning("admin: refused %s %s from %s: %s", req.method, path, peer, e.reason)
            return json_response(e.status, {"error": e.reason})
        except re.error as e:
            return json_response(
                400, {"error": f"bad request: filter is not a regular expression: {e}"}
            )
        except (ValueError, KeyError, TypeError) as e:
            log.warning("admin: bad request %s %s: %s", req.method, path, e)
            return json_response(400, {"error": f"bad request: {e}"})

    async def ready(self, _req: HttpRequest) -> HttpResponse:
        s = self.sidecar
        if s.ready and s.healthy:
            return _text(200, "LIVE\n")
        state = "DRAINING" if s.draining else ("FAILED" if not s.healthy else "INITIALIZING")
        return _text(503, state + "\n")

    async def collected_stats(self) -> Stats:
        """The counters `/stats` shows: this process's (a main process sums its workers')."""
        return self.sidecar.runtime.stats

    async def workers_view(self) -> dict[str, Any]:
        """More for `/stats`: nothing for one process (a main process lists its workers)."""
        return {}

    def governance_snapshot(self) -> dict[str, Any]:
        """The rules in force and their decisions (called after `collected_stats`, from
        whose answers a main process sums its workers' decisions)."""
        return self.sidecar.runtime.governance.snapshot()

    def istio_families(self) -> list[Family]:
        """Istio's standard metrics, when on (after `collected_stats`, as above)."""
        istio = self.sidecar.runtime.istio
        return list(istio.families()) if istio is not None else []

    def connection_rows(
        self, match: Match | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Connections per listener and per upstream endpoint (after `collected_stats`, as
        above: a main process sums its workers')."""
        listeners = listener_rows(self.sidecar.servers, match)
        return listeners, upstream_rows(self.sidecar.runtime.protocols, match)

    async def stats(self, req: HttpRequest) -> HttpResponse:
        rt = self.sidecar.runtime
        stats = await self.collected_stats()
        match = name_filter(_query(req).get("filter"))
        governance = self.governance_snapshot()
        if match is not None:
            rules = governance.get("rules", {})
            governance["rules"] = {k: v for k, v in rules.items() if match(f"governance.{k}")}
        listeners, upstreams = self.connection_rows(match)
        observed = {
            "listeners": listeners,
            "upstream_connections": upstreams,
            "tracing": rt.spans.statistics() if rt.spans is not None else None,
            "access_logs": {
                name: {"written": log_.sink.written, "dropped": log_.sink.dropped}
                for name, log_ in self.sidecar.access_logs.items()
            },
        }
        more = await self.workers_view()
        return json_response(
            200, {**stats.as_dict(match), "governance": governance, **observed, **more}
        )

    async def prometheus(self, req: HttpRequest) -> HttpResponse:
        match = name_filter(_query(req).get("filter"))
        stats = await self.collected_stats()
        snapshot = self.governance_snapshot()
        families = [*stats.families(), *governance_families(snapshot), *rule_families(snapshot)]
        families += connection_families(*self.connection_rows())
        families += self.istio_families()
        kept = [f for f in families if match is None or match(f.name)]
        # Prometheus asks for OpenMetrics first; everything else gets the classic format.
        accept = next((v for k, v in req.headers if k.lower() == b"accept"), b"")
        if b"application/openmetrics-text" in accept:
            return _text(200, render(kept, openmetrics=True), OPENMETRICS)
        return _text(200, render(kept), b"text/plain; version=0.0.4; charset=utf-8")

    async def server_info(self, _req: HttpRequest) -> HttpResponse:
        s = self.sidecar
        uptime = f"{max(0, int(time.time() - s.started_at))}s"
        state = "DRAINING" if s.draining else ("LIVE" if s.ready else "INITIALIZING")
        return json_response(
            200,
            {
                "version": __version__,
                "state": state,
                "uptime_current_epoch": uptime,
                "uptime_all_epochs": uptime,
                "node": {"id": s.config.app, "cluster": s.config.app},
                "pid": os.getpid(),  # which process answers, before and after an upgrade
            },
        )

    async def listeners(self, req: HttpRequest) -> HttpResponse:
        s = self.sidecar
        rows = [
            (
                f"{direction}[{i}]",
                direction,
                lc.protocol,
                s.bound.get(f"{direction}[{i}]", lc.listen),
            )
            for direction, configs in (
                ("inbound", s.config.inbound),
                ("outbound", s.config.outbound),
            )
            for i, lc in enumerate(configs)
        ]
        if _query(req).get("format") != "json":
            return _text(200, "".join(f"{name}::{addr}\n" for name, _d, _p, addr in rows))
        statuses = [
            {
                "name": name,
                "direction": direction,
                "protocol": protocol,
                "local_address": {
                    "socket_address": {"address": addr.host, "port_value": addr.port}
                },
            }
            for name, direction, protocol, addr in rows
        ]
        return json_response(200, {"listener_statuses": statuses})

    async def logging(self, req: HttpRequest) -> HttpResponse:
        """Envoy's `/logging`: `level=L` sets every logger, `<logger>=L` one logger."""
        changes = {name: log_level(value) for name, value in _query(req).items()}
        if "level" in changes:
            level = changes.pop("level")
            for logger in (logging.getLogger(), *_sofamesh_loggers()):
                logger.setLevel(level)
        for name, level in changes.items():
            logging.getLogger(name).setLevel(level)
        lines = [f"  {lg.name}: {logging.getLevelName(lg.getEffectiveLevel()).lower()}"
                 for lg in (logging.getLogger(), *_sofamesh_loggers())]  # fmt: skip
        return _text(200, "active loggers:\n" + "\n".join(lines) + "\n")

    async def reset_counters(self, _req: HttpRequest) -> HttpResponse:
        self.sidecar.runtime.stats.reset_counters()
        if self.sidecar.runtime.istio is not None:
            self.sidecar.runtime.istio.reset()
        return _text(200, "OK\n")

    async def clusters(self, _req: HttpRequest) -> HttpResponse:
        return json_response(200, {"clusters": cluster_rows(self.sidecar.runtime)})

    async def config_dump(self, _req: HttpRequest) -> HttpResponse:
        s = self.sidecar
        return json_response(
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
        return json_response(
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
        service, protocol, upstream, app, lease = publication(self.sidecar, json_body(req))
        ep = await self.sidecar.register(service, protocol, upstream, app, lease)
        return json_response(200, {"published": ep.to_dict()})

    async def unpublish(self, req: HttpRequest) -> HttpResponse:
        body = json_body(req)
        found = await self.sidecar.deregister(
            str(body["service"]), str(body.get("protocol", "http"))
        )
        return json_response(200 if found else 404, {"unpublished": found})

    async def subscribe(self, req: HttpRequest) -> HttpResponse:
        body = json_body(req)
        cm = self.sidecar.runtime.clusters
        assert cm is not None
        cluster = cm.get(str(body["service"]))
        return json_response(200, {"service": cluster.service, "endpoints": len(cluster.endpoints)})


def cluster_rows(rt: Runtime) -> list[dict[str, Any]]:
    """`/clusters`: each service's endpoints, health and breakers, by service."""
    breakers = rt.governance.breaker_states()
    cm = rt.clusters
    items = (
        [{**c.describe(), "breakers": breakers.get(c.service, [])} for c in cm.clusters.values()]
        if cm
        else []
    )
    return sorted(items, key=lambda c: str(c["service"]))


def _sofamesh_loggers() -> list[logging.Logger]:
    """The loggers of this package that exist so far, sorted by name."""
    known = logging.Logger.manager.loggerDict
    return [
        logging.getLogger(name)
        for name in sorted(known)
        if (name == "sofamesh" or name.startswith("sofamesh."))
        and isinstance(known[name], logging.Logger)
    ]
