"""Governance counters as Prometheus text: one family per rule kind and counter.

Rows of `GovernanceState.snapshot` become samples: string fields are labels
(rule, service, method, caller, direction, ...), numbers are values, booleans
0/1. ``sofamesh_governance_breakers_state{...,state="open"} 1`` carries a
breaker's state; ``sofamesh_governance_rules_info{version=...} 1`` the
version in force.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PREFIX = "sofamesh_governance"
# Values that go up and down; every other number is a counter.
GAUGES = frozenset(
    {
        "in_flight",
        "retries_in_flight",
        "active_faults",
        "tracked_values",
        "window_calls",
        "window_errors",
        "window_slow",
    }
)


def prometheus_lines(snapshot: dict[str, Any]) -> Iterator[str]:
    labels = {
        "version": str(snapshot.get("version", "")),
        "origin": str(snapshot.get("origin", "")),
    }
    yield f"# TYPE {PREFIX}_rules_info gauge\n{PREFIX}_rules_info{_labels(labels)} 1\n"
    yield f"# TYPE {PREFIX}_rules_rejected_total counter\n"
    yield f"{PREFIX}_rules_rejected_total {snapshot.get('rejected', 0)}\n"
    for kind, rows in snapshot.get("rules", {}).items():
        yield from _kind(kind, rows)


def _kind(kind: str, rows: list[dict[str, Any]]) -> Iterator[str]:
    families: dict[str, list[str]] = {}
    types: dict[str, str] = {}
    for row in rows:
        labels = {k: v for k, v in row.items() if isinstance(v, str) and k != "state"}
        for field, value in row.items():
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, int | float) and field != "next_retry_at":
                gauge = field in GAUGES
                name = f"{PREFIX}_{kind}_{field}" + ("" if gauge else "_total")
                types[name] = "gauge" if gauge else "counter"
                families.setdefault(name, []).append(f"{name}{_labels(labels)} {value}\n")
        if kind == "breakers" and "state" in row:
            name = f"{PREFIX}_breakers_state"
            types[name] = "gauge"
            for state in ("closed", "open", "half_open"):
                sample = int(row["state"] == state)
                families.setdefault(name, []).append(
                    f"{name}{_labels({**labels, 'state': state})} {sample}\n"
                )
    for name, samples in families.items():
        yield f"# TYPE {name} {types[name]}\n"
        yield from samples


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
