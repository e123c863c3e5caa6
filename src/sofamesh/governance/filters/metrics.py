"""Governance counters as Prometheus families: one per rule kind and counter.

Rows of `GovernanceState.snapshot` become samples: string fields are labels
(rule, service, method, caller, direction, ...), numbers are values, booleans
0/1. ``sofamesh_governance_breakers_state{...,state="open"} 1`` carries a
breaker's state; ``sofamesh_governance_rules_info{version=...} 1`` the
version in force.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sofamesh.stats import Family, render

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

Sample = tuple[str, dict[str, str], float]


def prometheus_lines(snapshot: dict[str, Any]) -> Iterator[str]:
    yield render(families(snapshot))


def families(snapshot: dict[str, Any]) -> Iterator[Family]:
    labels = {
        "version": str(snapshot.get("version", "")),
        "origin": str(snapshot.get("origin", "")),
    }
    yield Family(f"{PREFIX}_rules_info", "gauge", "The rules document in force.", [("", labels, 1)])
    rejected: list[Sample] = [("_total", {}, snapshot.get("rejected", 0))]
    yield Family(f"{PREFIX}_rules_rejected", "counter", "Rules documents rejected.", rejected)
    for kind, rows in snapshot.get("rules", {}).items():
        yield from _kind(kind, rows)


def _kind(kind: str, rows: list[dict[str, Any]]) -> Iterator[Family]:
    samples: dict[str, list[Sample]] = {}
    for row in rows:
        labels = {k: v for k, v in row.items() if isinstance(v, str) and k != "state"}
        for field, value in row.items():
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, int | float) and field != "next_retry_at":
                suffix = "" if field in GAUGES else "_total"
                samples.setdefault(field, []).append((suffix, labels, value))
        if kind == "breakers" and "state" in row:
            for state in ("closed", "open", "half_open"):
                sample = ("", {**labels, "state": state}, int(row["state"] == state))
                samples.setdefault("state", []).append(sample)
    for field, rows_ in samples.items():
        gauge = field in GAUGES or field == "state"
        help_ = f"Governance {kind}: {field.replace('_', ' ')}."
        name = f"{PREFIX}_{kind}_{field.removesuffix('_total')}"
        yield Family(name, "gauge" if gauge else "counter", help_, rows_)
