"""Counters and latency histograms, rendered as JSON (`/stats`) and Prometheus text.

Cheap on the hot path: one `CallStats` per (direction, service, caller) and one
per endpoint, each a few integers and a fixed-bucket histogram, found by dict
lookup. JSON names follow Envoy's (`upstream_rq_total`, `upstream_rq_time`).

Prometheus families follow its naming rules: counters end in `_total`, durations
are histograms in seconds (`_duration_seconds`), every family has `# HELP` and
`# TYPE`. `render` writes the classic text format (0.0.4) or OpenMetrics 1.0,
which Prometheus asks for first.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import attrs

from sofamesh.model import Status

log = logging.getLogger("sofamesh.stats")
# Latency buckets in milliseconds (Envoy's default histogram buckets, trimmed).
BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
# The bucket bounds as floats: `bisect` compares a float with a float faster than with an int.
_BOUNDS = tuple(float(b) for b in BUCKETS_MS)
_FIRST = _BOUNDS[0]
# Distinct callers counted apart per service (`metrics.max_callers`); the rest share one
# row, so a peer sending made-up caller names cannot grow the stats without bound.
MAX_CALLERS = 64
OTHER_CALLERS = "_other"
# Distinct services counted apart per direction (`metrics.max_services`), for the same
# reason: any caller can name any service (a sidecar's outbound listener takes the Host it
# is given), so past this many, new names share one row.
MAX_SERVICES = 1000
OTHER_SERVICES = "_other"
# The one row of every name no registry, route or listener knows (Envoy counts such
# requests once, `no_cluster`, not per name); parentheses cannot occur in a service name.
UNKNOWN_SERVICES = "(unknown)"
COUNTER_HELP = {
    "upstream_rq_retry": "Outbound calls retried.",
    "outlier.ejections": "Endpoints ejected by outlier detection.",
}

Match = Callable[[str], bool]


class Histogram:
    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.sum_ms = 0.0

    @property
    def count(self) -> int:
        """Observations so far: the buckets' sum, taken when read rather than kept per call."""
        return sum(self.counts)

    def observe(self, ms: float) -> None:
        self.counts[0 if ms <= _FIRST else bisect.bisect_left(_BOUNDS, ms)] += 1
        self.sum_ms += ms

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-th observation (0 if none)."""
        count = self.count
        if not count:
            return 0.0
        rank = q * count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return BUCKETS_MS[i] if i < len(BUCKETS_MS) else float("inf")
        return float("inf")


class CallStats:
    """What happened to the calls of one service (or endpoint) in one direction."""

    __slots__ = ("_by_status", "_code", "_repeats", "_status", "active", "latency")

    def __init__(self) -> None:
        self.active = 0
        self._by_status: dict[Status, dict[int, int]] = {}  # status -> protocol code -> calls
        # The last (status, code) recorded and its calls not yet in `_by_status`: a run of
        # calls that end alike (nearly all of them) costs one counter bump each, not two
        # dict look-ups and a store; `by_status` adds the run in when read.
        self._status: Status | None = None
        self._code = 0
        self._repeats = 0
        self.latency = Histogram()

    def record(self, status: Status, ms: float, code: int = 0) -> None:
        # No call counter of its own: `total` and the histogram's `count` are sums of the
        # counts kept here anyway, taken when read (a big int's `+= 1` allocates one).
        if status is self._status and code == self._code:
            self._repeats += 1
        else:
            self._fold()
            self._status, self._code, self._repeats = status, code, 1
        latency = self.latency  # Histogram.observe, inline: two rows per call record here
        # A call under the first bound (most of an in-process chain's) takes one float
        # compare; `bisect_left` over the int bounds cost 1,500 instructions, over floats 1,000.
        latency.counts[0 if ms <= _FIRST else bisect.bisect_left(_BOUNDS, ms)] += 1
        latency.sum_ms += ms

    @property
    def total(self) -> int:
        """Calls counted: every status and code's, the run not yet folded in included."""
        return sum(sum(codes.values()) for codes in self._by_status.values()) + self._repeats

    @property
    def by_status(self) -> dict[Status, dict[int, int]]:
        """Calls by status and protocol code (the dict itself: a change to it counts)."""
        self._fold()
        return self._by_status

    def _fold(self) -> None:
        """The run of like calls into `_by_status`."""
        if self._repeats:
            status = self._status
            assert status is not None
            codes = self._by_status.get(status)
            if codes is None:
                codes = self._by_status[status] = {}
            codes[self._code] = codes.get(self._code, 0) + self._repeats
            self._repeats = 0

    def reset(self) -> None:
        """Counters and histogram back to zero; calls in flight stay counted."""
        self._by_status = {}
        self._repeats = 0
        self.latency = Histogram()

    @property
    def errors(self) -> int:
        return self.total - sum(self.by_status.get(Status.OK, {}).values())

    def as_dict(self) -> dict[str, Any]:
        count = self.latency.count
        return {
            "rq_total": self.total,
            "rq_active": self.active,
            "rq_error": self.errors,
            "rq_status": {s.value: sum(c.values()) for s, c in self.by_status.items()},
            "rq_time_ms": {
                "p50": self.latency.quantile(0.5),
                "p99": self.latency.quantile(0.99),
                "mean": self.latency.sum_ms / count if count else 0.0,
            },
        }


class Stats:
    """Every counter of one mesh (SDK instance or sidecar process)."""

    def __init__(self, *, max_services: int = MAX_SERVICES, max_callers: int = MAX_CALLERS) -> None:
        self.services: dict[tuple[str, str, str], CallStats] = {}  # (direction, service, caller)
        self.endpoints: dict[tuple[str, str], CallStats] = {}  # (service, address)
        self.counters: dict[str, int] = {}
        self.max_services = max_services
        self.max_callers = max_callers
        self._callers: dict[tuple[str, str], int] = {}  # (direction, service) -> callers kept
        self._services: dict[str, int] = {}  # direction -> services kept

    def service(self, direction: str, service: str, caller: str = "") -> CallStats:
        key = (direction, service, caller)
        s = self.services.get(key)
        if s is None:
            s = self._new_service(direction, service, caller)
        return s

    def _new_service(self, direction: str, service: str, caller: str) -> CallStats:
        if (direction, service) not in self._callers and service not in _SHARED_ROWS:
            services = self._services.get(direction, 0)
            if services >= self.max_services:
                self._overflow(direction, service)
                return self.service(direction, OTHER_SERVICES, caller)
            self._services[direction] = services + 1
        kept = self._callers.get((direction, service), 0)
        if kept >= self.max_callers:
            return self.services.setdefault((direction, service, OTHER_CALLERS), CallStats())
        self._callers[(direction, service)] = kept + 1
        s = self.services[(direction, service, caller)] = CallStats()
        return s

    def _overflow(self, direction: str, service: str) -> None:
        """Count a name past `max_services`; warn at the first and every thousandth."""
        name = f"stats.services_overflowed.{direction}"
        self.incr(name)
        n = self.counters[name]
        if n == 1 or n % 1000 == 0:
            log.warning(
                "%d %s services counted apart (metrics.max_services): %r and later names "
                "count under %s (%d so far)",
                self.max_services,
                direction,
                service[:200],
                OTHER_SERVICES,
                n,
            )

    def endpoint(self, service: str, address: str) -> CallStats:
        key = (service, address)
        s = self.endpoints.get(key)
        if s is None:
            s = self.endpoints[key] = CallStats()
        return s

    def incr(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def reset_counters(self) -> None:
        """Every counter and histogram to zero (Envoy's `/reset_counters`); gauges stay."""
        self.counters = dict.fromkeys(self.counters, 0)
        for cs in (*self.services.values(), *self.endpoints.values()):
            cs.reset()

    def as_dict(self, match: Match | None = None) -> dict[str, Any]:
        """The JSON of `/stats`; `match` keeps counters by name, services by
        `direction.service`, endpoints by `service.address`."""
        keep = match or (lambda _name: True)
        return {
            "counters": {k: v for k, v in sorted(self.counters.items()) if keep(k)},
            "services": [
                {"direction": d, "service": s, "caller": c, **cs.as_dict()}
                for (d, s, c), cs in sorted(self.services.items())
                if keep(f"{d}.{s}")
            ],
            "endpoints": [
                {"service": s, "address": a, **cs.as_dict()}
                for (s, a), cs in sorted(self.endpoints.items())
                if keep(f"{s}.{a}")
            ],
        }

    def families(self) -> Iterator[Family]:
        for name, value in sorted(self.counters.items()):
            help_ = COUNTER_HELP.get(name, f"Mesh counter {name}.")
            metric = "sofamesh_" + name.replace(".", "_").removesuffix("_total")
            yield Family(metric, "counter", help_, [("_total", {}, value)])
        services = [
            ({"direction": d, "service": s, "caller": c}, cs)
            for (d, s, c), cs in sorted(self.services.items())
        ]
        yield from _call_families("sofamesh_rq", "service and caller", services, with_code=True)
        endpoints = [
            ({"service": s, "address": a}, cs) for (s, a), cs in sorted(self.endpoints.items())
        ]
        yield from _call_families("sofamesh_endpoint_rq", "endpoint", endpoints, with_code=False)


_SHARED_ROWS = frozenset((OTHER_SERVICES, UNKNOWN_SERVICES))


@attrs.frozen
class Family:
    """One Prometheus metric family: `name` without a counter's `_total`."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    samples: list[tuple[str, dict[str, str], float]]  # (suffix, labels, value)
    unit: str = ""


def render(families: Iterable[Family], *, openmetrics: bool = False) -> str:
    """Families as the classic text format, or OpenMetrics 1.0 (ending in `# EOF`)."""
    out: list[str] = []
    for f in families:
        # The classic format names a counter family with its `_total`; OpenMetrics without.
        head = f.name + ("_total" if f.kind == "counter" and not openmetrics else "")
        out.append(f"# HELP {head} {f.help}\n# TYPE {head} {f.kind}\n")
        if f.unit and openmetrics:
            out.append(f"# UNIT {head} {f.unit}\n")
        out.extend(
            f"{f.name}{suffix}{_labels(labels)} {_number(v)}\n" for suffix, labels, v in f.samples
        )
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out)


def name_filter(pattern: str | None) -> Match | None:
    """Envoy's `filter=REGEX`: a name is kept when the expression matches part of it."""
    if not pattern:
        return None
    return re.compile(pattern).search  # type: ignore[return-value]


def _call_families(
    prefix: str, what: str, rows: list[tuple[dict[str, str], CallStats]], *, with_code: bool
) -> Iterator[Family]:
    calls: list[tuple[str, dict[str, str], float]] = []
    for labels, cs in rows:
        for status, codes in sorted(cs.by_status.items(), key=lambda kv: kv[0].value):
            for code, n in sorted(codes.items()):
                more = {"status": status.value}
                if with_code:
                    more["response_code"] = str(code) if code else ""
                calls.append(("_total", {**labels, **more}, n))
    yield Family(prefix, "counter", f"Calls per {what}, by outcome.", calls)
    active = [("", labels, float(cs.active)) for labels, cs in rows]
    yield Family(f"{prefix}_active", "gauge", f"Calls in flight per {what}.", active)
    durations = [sample for labels, cs in rows for sample in _histogram(labels, cs.latency)]
    help_ = f"Call duration per {what}, in seconds."
    yield Family(f"{prefix}_duration_seconds", "histogram", help_, durations, unit="seconds")


def _histogram(labels: dict[str, str], h: Histogram) -> Iterator[tuple[str, dict[str, str], float]]:
    cum = 0
    for bound, c in zip((*BUCKETS_MS, float("inf")), h.counts, strict=True):
        cum += c
        le = "+Inf" if bound == float("inf") else f"{bound / 1000:g}"
        yield "_bucket", {**labels, "le": le}, cum
    yield "_sum", labels, h.sum_ms / 1000
    yield "_count", labels, h.count


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    return str(v)
