"""The service catalog of a workspace: providers from the registry, consumers from reports.

A service belongs to a workspace when one of the workspace's data planes provides
or calls it (the registry itself has no notion of workspaces). Its providers are
the registry's endpoints (address, app, protocol, version, zone, tags, sdk or
sidecar, and whether the reporting data planes see it serving); its consumers
are the apps whose data planes report calling it.

Golden metrics come from the data planes' cumulative counters: requests/s and
errors are differences between a data plane's last two reports; p99 is the
largest p99 any reporter saw in its window (a bound, not a merged quantile).
Per service, the providers' inbound counters are used when a provider reports,
else the sum of its callers' outbound edges.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

from sofamesh.control.planes import Planes
from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import Registry

log = logging.getLogger("sofamesh.control.catalog")

_REGISTRY_TTL = 1.0  # seconds a registry read is reused across requests
_REGISTRY_READS = 16  # registry reads in flight at once for one listing


def rates(record: dict[str, Any]) -> dict[tuple[str, str], dict[str, float]]:
    """(direction, service) -> requests/s, errors/s and p99 between the last two reports."""
    now_rows = {(t.get("direction"), t.get("service")): t for t in record.get("traffic") or []}
    prev = {(t.get("direction"), t.get("service")): t for t in record.get("traffic_prev") or []}
    elapsed = record["last_seen"] - (record.get("traffic_prev_time") or record["last_seen"])
    out = {}
    for key, row in now_rows.items():
        before = prev.get(key, {})
        requests = max(0, int(row.get("requests", 0)) - int(before.get("requests", 0)))
        errors = max(0, int(row.get("errors", 0)) - int(before.get("errors", 0)))
        per_s = requests / elapsed if elapsed > 0 else 0.0
        out[(str(key[0]), str(key[1]))] = {
            "requests": requests,
            "errors": errors,
            "rps": per_s,
            "p99_ms": float(row.get("p99", 0.0)),
        }
    return out


def golden(parts: list[dict[str, float]]) -> dict[str, Any]:
    requests = sum(p["requests"] for p in parts)
    errors = sum(p["errors"] for p in parts)
    return {
        "rps": round(sum(p["rps"] for p in parts), 3),
        "success_rate": None if not requests else round(1 - errors / requests, 4),
        "p99_ms": max((p["p99_ms"] for p in parts), default=None),
    }


def provider(ep: Endpoint, serving: set[str]) -> dict[str, Any]:
    meta = dict(ep.meta)
    return {
        "address": ep.address,
        "app": ep.app,
        "protocol": ep.protocol,
        "version": ep.version,
        "zone": ep.zone,
        "tags": sorted(ep.tags),
        "weight": ep.weight,
        "mode": meta.get("mode", "sdk"),
        "health": "serving" if ep.app in serving else "unknown",
    }


class Catalog:
    def __init__(self, planes: Planes, registry: Registry) -> None:
        self.planes = planes
        self.registry = registry
        self._endpoints: dict[str, tuple[float, frozenset[Endpoint]]] = {}

    async def endpoints(self, service: str) -> frozenset[Endpoint]:
        cached = self._endpoints.get(service)
        if cached and time.monotonic() - cached[0] < _REGISTRY_TTL:
            return cached[1]
        snapshot: frozenset[Endpoint] = cached[1] if cached else frozenset()
        with anyio.move_on_after(2.0):
            async with self.registry.watch(service) as snapshots:
                async for first in snapshots:
                    snapshot = first
                    break
        self._endpoints[service] = (time.monotonic(), snapshot)
        return snapshot

    async def services(self, workspace: str) -> list[dict[str, Any]]:
        planes = await self.planes.list(workspace)
        names: set[str] = set()
        for dp in planes:
            names.update(str(s) for s in dp.get("provides") or [])
            names.update(str(s) for s in dp.get("calls") or [])
        serving = {dp["app"] for dp in planes if dp.get("health") == "serving"}
        # Once per data plane, not once per service and data plane: a console listing 200
        # services of 50 data planes asks for this every 2 s.
        traffic = [(dp, rates(dp)) for dp in planes]
        found = await self._all_endpoints(sorted(names))
        return [self._service(n, found[n], traffic, serving) for n in sorted(names)]

    async def _all_endpoints(self, names: list[str]) -> dict[str, frozenset[Endpoint]]:
        """Every service's endpoints, read a few at a time rather than one after another."""
        found: dict[str, frozenset[Endpoint]] = {}
        limiter = anyio.CapacityLimiter(_REGISTRY_READS)

        async def one(name: str) -> None:
            async with limiter:
                found[name] = await self.endpoints(name)

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)
        return found

    def _service(
        self,
        name: str,
        endpoints: frozenset[Endpoint],
        traffic: list[tuple[dict[str, Any], dict[tuple[str, str], dict[str, float]]]],
        serving: set[str],
    ) -> dict[str, Any]:
        consumers: dict[str, list[dict[str, float]]] = {}
        inbound: list[dict[str, float]] = []
        for dp, rated in traffic:
            if name in (dp.get("calls") or []) or ("outbound", name) in rated:
                edge = rated.get(("outbound", name))
                consumers.setdefault(dp["app"], []).extend([edge] if edge else [])
            if ("inbound", name) in rated:
                inbound.append(rated[("inbound", name)])
        edges = [p for parts in consumers.values() for p in parts]
        return {
            "name": name,
            "providers": [
                provider(ep, serving) for ep in sorted(endpoints, key=lambda e: e.address)
            ],
            "consumers": [
                {"app": app, "metrics": golden(parts)} for app, parts in sorted(consumers.items())
            ],
            "metrics": golden(inbound or edges),
        }
