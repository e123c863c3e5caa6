"""Counters and latency histograms, rendered as JSON (`/stats`) and Prometheus text.

Cheap on the hot path: one `CallStats` per (direction, service) and one per
endpoint, each a few integers and a fixed-bucket histogram, found by dict
lookup. Names follow Envoy's (`upstream_rq_total`, `upstream_rq_time`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from sofamesh.model import Status

# Latency buckets in milliseconds (Envoy's default histogram buckets, trimmed).
BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


class Histogram:
    __slots__ = ("count", "counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.count = 0
        self.sum_ms = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        self.count += 1
        self.sum_ms += ms

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-th observation (0 if none)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return BUCKETS_MS[i] if i < len(BUCKETS_MS) else float("inf")
        return float("inf")


class CallStats:
    """What happened to the calls of one service (or endpoint) in one direction."""

    __slots__ = ("active", "by_status", "latency", "total")

    def __init__(self) -> None:
        self.total = 0
        self.active = 0
        self.by_status: dict[Status, int] = {}
        self.latency = Histogram()

    def record(self, status: Status, ms: float) -> None:
        self.total += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.latency.observe(ms)

    @property
    def errors(self) -> int:
        return self.total - self.by_status.get(Status.OK, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rq_total": self.total,
            "rq_active": self.active,
            "rq_error": self.errors,
            "rq_status": {s.value: n for s, n in self.by_status.items()},
            "rq_time_ms": {
                "p50": self.latency.quantile(0.5),
                "p99": self.latency.quantile(0.99),
                "mean": self.latency.sum_ms / self.latency.count if self.latency.count else 0.0,
            },
        }


class Stats:
    """Every counter of one mesh (SDK instance or sidecar process)."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], CallStats] = {}  # (direction, service)
        self.endpoints: dict[tuple[str, str], CallStats] = {}  # (service, address)
        self.counters: dict[str, int] = {}

    def service(self, direction: str, service: str) -> CallStats:
        key = (direction, service)
        s = self.services.get(key)
        if s is None:
            s = self.services[key] = CallStats()
        return s

    def endpoint(self, service: str, address: str) -> CallStats:
        key = (service, address)
        s = self.endpoints.get(key)
        if s is None:
            s = self.endpoints[key] = CallStats()
        return s

    def incr(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "counters": dict(sorted(self.counters.items())),
            "services": [
                {"direction": d, "service": s, **cs.as_dict()}
                for (d, s), cs in sorted(self.services.items())
            ],
            "endpoints": [
                {"service": s, "address": a, **cs.as_dict()}
                for (s, a), cs in sorted(self.endpoints.items())
            ],
        }

    def prometheus(self) -> str:
        return "".join(self._prometheus_lines())

    def _prometheus_lines(self) -> Iterator[str]:
        for name, value in sorted(self.counters.items()):
            metric = "sofamesh_" + name.replace(".", "_")
            yield f"# TYPE {metric} counter\n{metric} {value}\n"
        yield from _family(
            "sofamesh_rq",
            "service",
            [({"direction": d, "service": s}, cs) for (d, s), cs in sorted(self.services.items())],
        )
        yield from _family(
            "sofamesh_endpoint_rq",
            "endpoint",
            [({"service": s, "address": a}, cs) for (s, a), cs in sorted(self.endpoints.items())],
        )


def _labels(labels: dict[str, str], **more: str) -> str:
    items = {**labels, **more}
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in items.items())
    return "{" + inner + "}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(prefix: str, what: str, rows: list[tuple[dict[str, str], CallStats]]) -> Iterator[str]:
    yield f"# HELP {prefix}_total Calls per {what} and outcome.\n# TYPE {prefix}_total counter\n"
    for labels, cs in rows:
        for status, n in sorted(cs.by_status.items(), key=lambda kv: kv[0].value):
            yield f"{prefix}_total{_labels(labels, status=status.value)} {n}\n"
    yield f"# TYPE {prefix}_active gauge\n"
    for labels, cs in rows:
        yield f"{prefix}_active{_labels(labels)} {cs.active}\n"
    yield f"# TYPE {prefix}_time_ms histogram\n"
    for labels, cs in rows:
        h = cs.latency
        cum = 0
        for bound, c in zip((*BUCKETS_MS, float("inf")), h.counts, strict=True):
            cum += c
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            yield f"{prefix}_time_ms_bucket{_labels(labels, le=le)} {cum}\n"
        yield f"{prefix}_time_ms_sum{_labels(labels)} {h.sum_ms:.3f}\n"
        yield f"{prefix}_time_ms_count{_labels(labels)} {h.count}\n"
