"""Connection counts for `/stats`: per listener (downstream) and per upstream endpoint.

Envoy's names: a listener's `downstream_cx_active` (open now), `downstream_cx_total`
(accepted since start), `downstream_cx_overflow` (refused: over `max_connections` or the
source's share), and ours, `downstream_cx_evicted` (idle connections closed to make room,
`transport/admission.py`); an endpoint's `upstream_cx_active` (open connections of the
protocol's pool to it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

from sofamesh.stats import Family, Match

LISTENER_FIELDS = {  # ours (`statistics()`) -> Envoy's
    "active_connections": "downstream_cx_active",
    "accepted_connections": "downstream_cx_total",
    "rejected_connections": "downstream_cx_overflow",
    "evicted_connections": "downstream_cx_evicted",
}
HELP = {
    "downstream_cx_active": "Connections open on the listener.",
    "downstream_cx_total": "Connections the listener accepted.",
    "downstream_cx_overflow": "Connections refused: over max_connections or the source's share.",
    "downstream_cx_evicted": "Idle connections closed to make room for new ones.",
}


def listener_rows(servers: dict[str, Any], match: Match | None = None) -> list[dict[str, Any]]:
    """One row per listener whose server counts its connections (`statistics()`)."""
    rows = []
    for name, server in servers.items():
        statistics = getattr(server, "statistics", None)
        if statistics is None or (match is not None and not match(f"listener.{name}")):
            continue
        stats = statistics()
        row: dict[str, Any] = {"name": name}
        row.update({envoy: getattr(stats, ours, 0) for ours, envoy in LISTENER_FIELDS.items()})
        rows.append(row)
    return rows


def upstream_rows(protocols: dict[str, Any], match: Match | None = None) -> list[dict[str, Any]]:
    """One row per endpoint a protocol's pool holds connections to."""
    rows, seen = [], set()
    for name, support in sorted(protocols.items()):
        pool = getattr(support, "pool", None)
        counts = getattr(pool, "connections_by_endpoint", None)
        if counts is None or id(pool) in seen:
            continue
        seen.add(id(pool))
        for (host, port), n in sorted(counts().items()):
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if match is None or match(f"upstream.{address}"):
                rows.append({"protocol": name, "address": address, "upstream_cx_active": n})
    return rows


def families(
    listeners: Iterable[dict[str, Any]], upstreams: Iterable[dict[str, Any]]
) -> Iterator[Family]:
    rows = list(listeners)
    for envoy in LISTENER_FIELDS.values():
        kind: Literal["gauge", "counter"] = "gauge" if envoy.endswith("_active") else "counter"
        suffix = "" if kind == "gauge" else "_total"
        samples = [(suffix, {"listener": r["name"]}, float(r[envoy])) for r in rows]
        name = f"sofamesh_listener_{envoy.removesuffix('_total')}"  # a counter's own suffix
        yield Family(name, kind, HELP[envoy], samples)
    yield Family(
        "sofamesh_upstream_cx_active",
        "gauge",
        "Connections open from the sidecar's pools to the endpoint.",
        [
            (
                "",
                {"protocol": r["protocol"], "address": r["address"]},
                float(r["upstream_cx_active"]),
            )
            for r in upstreams
        ],
    )
