"""A worker process's counters as plain data, and their sum at the main process's admin API.

Each worker keeps its own `Stats` (no sharing on the request path); the admin API asks
every worker for `stats_state` and adds them up with `merge_state` into one `Stats`,
which renders `/stats` and `/stats/prometheus` exactly as a single process would.
Histograms are summed bucket by bucket, so the merged quantiles are those of all the
calls, not an average of each worker's. Connection counts (per listener, per upstream
endpoint) are summed row by row (`summed_rows`).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from sofamesh.model import Status
from sofamesh.stats import CallStats, Family, Stats


def stats_state(stats: Stats) -> dict[str, Any]:
    """Everything `merge_state` needs, as JSON-able data."""
    return {
        "counters": dict(stats.counters),
        "services": [[*key, _call_state(cs)] for key, cs in stats.services.items()],
        "endpoints": [[*key, _call_state(cs)] for key, cs in stats.endpoints.items()],
    }


def _call_state(cs: CallStats) -> dict[str, Any]:
    return {
        "total": cs.total,
        "active": cs.active,
        "by_status": {
            s.value: {str(c): n for c, n in codes.items()} for s, codes in cs.by_status.items()
        },
        "counts": list(cs.latency.counts),
        "sum_ms": cs.latency.sum_ms,
    }


def merge_state(into: Stats, state: dict[str, Any]) -> None:
    """Add one worker's `stats_state` to `into`."""
    for name, n in state["counters"].items():
        into.incr(str(name), int(n))
    for direction, service, caller, cs in state["services"]:
        _add(into.services.setdefault((direction, service, caller), CallStats()), cs)
    for service, address, cs in state["endpoints"]:
        _add(into.endpoints.setdefault((service, address), CallStats()), cs)


def _add(cs: CallStats, state: dict[str, Any]) -> None:
    # `total` is the sum of `by_status`, added below (the state's "total" is the same sum).
    cs.active += int(state["active"])
    for status, codes in state["by_status"].items():
        mine = cs.by_status.setdefault(Status(status), {})
        for code, n in codes.items():
            mine[int(code)] = mine.get(int(code), 0) + int(n)
    h = cs.latency
    h.counts = [a + int(b) for a, b in zip(h.counts, state["counts"], strict=True)]
    h.sum_ms += float(state["sum_ms"])


def merged(states: list[dict[str, Any]]) -> Stats:
    """One `Stats` holding the sum of `states`."""
    total = Stats()
    for state in states:
        merge_state(total, state)
    return total


def requests_served(state: dict[str, Any]) -> int:
    """The calls one worker has counted (inbound and outbound), for its row in `/stats`."""
    return sum(int(cs["total"]) for _d, _s, _c, cs in state["services"])


def summed(values: list[Any]) -> Any:
    """JSON values added up: numbers summed, mappings key by key; anything else (a state,
    a name) as the first one says."""
    first = values[0]
    if isinstance(first, dict):
        keys = {k: None for v in values if isinstance(v, dict) for k in v}
        return {k: summed([v[k] for v in values if isinstance(v, dict) and k in v]) for k in keys}
    if isinstance(first, int | float) and not isinstance(first, bool):
        return sum(v for v in values if isinstance(v, int | float))
    return first


def summed_rows(tables: list[list[dict[str, Any]]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows from several processes, one per `key`, their numbers summed (first seen first):
    the workers' connection counts per listener and per upstream endpoint."""
    rows: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for table in tables:
        for row in table:
            rows.setdefault(tuple(row[k] for k in key), []).append(row)
    return [summed(same) for same in rows.values()]


def family_state(families: list[Family]) -> list[dict[str, Any]]:
    return [{**attrs.asdict(f, recurse=False)} for f in families]


def merged_families(states: list[list[dict[str, Any]]]) -> list[Family]:
    """Prometheus families from several processes, each sample summed across them."""
    order: dict[str, dict[str, Any]] = {}
    values: dict[str, dict[tuple[str, str], tuple[str, dict[str, str], float]]] = {}
    for state in states:
        for fam in state:
            order.setdefault(fam["name"], fam)
            samples = values.setdefault(fam["name"], {})
            for suffix, labels, value in fam["samples"]:
                key = (suffix, json.dumps(labels, sort_keys=True))
                old = samples.get(key)
                samples[key] = (suffix, labels, value + (old[2] if old else 0.0))
    return [
        Family(f["name"], f["kind"], f["help"], list(values[name].values()), f["unit"])
        for name, f in order.items()
    ]
