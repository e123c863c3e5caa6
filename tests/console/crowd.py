"""A crowded workspace for the console's readability test and its benchmark (synchronous).

`crowd` publishes `n_services` services in a file registry (each owned by one of
`n_planes` apps), sends every data plane's report twice (so rates exist: each
provides its share of the services and calls four others), and applies rules of
every kind naming those services, in a few versions, so every page has rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from sofamesh.endpoint import Endpoint
from sofamesh.registry.file import FileRegistry


def service_names(n: int) -> list[str]:
    return [f"com.example.Service{k:03d}" for k in range(n)]


def report(i: int, services: list[str], n: int, requests: int) -> dict[str, Any]:
    mine = services[i::n]
    calls = [services[(i * 7 + k) % len(services)] for k in range(4)]
    traffic = [
        {
            "direction": "inbound",
            "service": s,
            "requests": requests,
            "errors": requests // 50,
            "p99": 12.5,
        }
        for s in mine
    ] + [
        {"direction": "outbound", "service": s, "requests": requests // 2, "errors": 0, "p99": 20.0}
        for s in calls
    ]
    return {
        "id": f"app{i}-1",
        "app": f"app{i}",
        "mode": "sidecar",
        "version": "bench",
        "provides": mine,
        "calls": calls,
        "traffic": traffic,
        "decisions": [{"kind": "rate_limits", "name": f"limit-{mine[0]}", "shadowed": i}]
        if mine
        else [],
        "pod": {"name": f"app{i}-7d9f", "namespace": "bench", "phase": "Running"},
        "started_at": time.time(),
        "injected_at": str(int(time.time())),
    }


def rules(services: list[str]) -> dict[str, Any]:
    """Rules of every kind over the crowd's services (a rate limit for each)."""
    some = services[:20]
    return {
        "routes": [{"name": f"route-{s}", "service": s, "timeout": 2.0} for s in some],
        "load_balancing": [{"service": s, "hash": {"header": "x-user"}} for s in some],
        "breakers": [{"service": s, "name": f"breaker-{s}", "threshold": 0.5} for s in some],
        "rate_limits": [
            {"service": s, "name": f"limit-{s}", "count": 100, "enforcement": {"shadow": True}}
            for s in services
        ],
        "hot_params": [
            {"service": s, "name": f"hot-{s}", "header": "x-user", "count": 10} for s in some
        ],
        "auth": {
            "inbound": {"rules": [{"service": s, "allow": ["app1", "app2"]} for s in some]},
        },
        "faults": [
            {"service": s, "name": f"fault-{s}", "abort": {"percentage": 1.0}} for s in some
        ],
        "fallbacks": [
            {"service": s, "name": f"fallback-{s}", "response": {"body": "{}"}} for s in some
        ],
        "resource_limits": [{"service": s, "name": f"cap-{s}", "max_requests": 500} for s in some],
    }


def crowd(
    url: str, admin_token: str, dp_token: str, registry: Path, n_services: int, n_planes: int
) -> list[str]:
    """Fill workspace `bench` (made already); its service names."""
    services = service_names(n_services)
    # Entries owned by this process (alive for the whole run), written as `publish` does.
    reg = FileRegistry(registry, lease=3600)
    for k, name in enumerate(services):
        app = f"app{k % n_planes}"
        reg._publish(Endpoint(name, "127.0.0.1", 20000 + k, app=app, meta={"mode": "sidecar"}))
    base = f"{url}/api/v1/workspaces/bench"
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {dp_token}"}) as dp:
        for requests in (1000, 1500):  # two reports: rates are their differences
            for i in range(n_planes):
                resp = dp.post(f"{base}/dataplanes", json=report(i, services, n_planes, requests))
                resp.raise_for_status()
            if requests == 1000:
                time.sleep(1.0)  # reports of one data plane must be apart (the flood guard)
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {admin_token}"}) as admin:
        doc = rules(services)
        for n in range(3):  # a few versions for the history page
            doc["rate_limits"][0]["count"] = 100 + n
            body = {"document": doc, "message": f"limits, take {n + 1}"}
            admin.post(f"{base}/rules", json=body).raise_for_status()
    return services
