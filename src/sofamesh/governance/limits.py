"""Per-cluster resource limits: Envoy's ``circuit_breakers.thresholds``.

Envoy calls these circuit breakers; they are caps on work in flight, not the
error-driven breakers of `breaker.py`. One `ResourceLimits` per upstream
cluster holds four gauges, each with a cap and an overflow counter:

==================  ===========================  ==================================
Gauge               Envoy threshold (default)    Envoy overflow counter
==================  ===========================  ==================================
`connections`       ``max_connections`` (1024)   ``upstream_cx_overflow``
`pending`           ``max_pending_requests``     ``upstream_rq_pending_overflow``
`requests`          ``max_requests`` (1024)      ``upstream_rq_pending_overflow``
`retries`           ``max_retries`` (3)          ``upstream_rq_retry_overflow``
==================  ===========================  ==================================

`try_acquire()` takes one unit if the gauge is below its cap; `release(verdict)`
gives it back. Each gauge keeps its own overflow count (Envoy folds request
overflows into the pending counter; we keep them apart and say so in stats).

With a `RetryBudget` (Envoy's ``retry_budget``) the retry cap is not fixed but
``max(min_retry_concurrency, budget_percent% of (active requests + pending))``,
and ``max_retries`` is ignored, as in Envoy.

Shadow mode (`EnforcementConfig`) lets an overflowing call through and counts
it. Unlike a rate limiter's tokens, these gauges measure work really in
flight, so a shadowed call still occupies a unit until it is released.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs

from sofamesh.governance.shadow import (
    EnforcementConfig,
    EnforcementStatistics,
    Enforcer,
    Verdict,
)

_ge0 = attrs.validators.ge(0)


@attrs.frozen(kw_only=True)
class RetryBudget:
    """Envoy's ``retry_budget``: retries as a share of active work, with a floor."""

    budget_percent: float = attrs.field(
        default=20.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(100.0)]
    )
    min_retry_concurrency: int = attrs.field(default=3, validator=_ge0)


@attrs.frozen(kw_only=True)
class ResourceLimitsConfig:
    """Envoy's defaults: 1024 connections, pending and requests, 3 retries."""

    max_connections: int = attrs.field(default=1024, validator=_ge0)
    max_pending_requests: int = attrs.field(default=1024, validator=_ge0)
    max_requests: int = attrs.field(default=1024, validator=_ge0)
    max_retries: int = attrs.field(default=3, validator=_ge0)
    retry_budget: RetryBudget | None = None
    enforcement: EnforcementConfig = attrs.field(factory=EnforcementConfig)


@attrs.frozen
class GaugeStatistics:
    active: int
    limit: int
    remaining: int  # Envoy's ``remaining_*`` gauges
    overflow: int
    open: bool  # Envoy's ``*_open`` gauges: the cap is reached


class Gauge:
    """A count of units in use with a cap (fixed, or computed per acquire)."""

    __slots__ = ("_enforcer", "_limit", "active", "overflow")

    def __init__(self, limit: int | Callable[[], int], enforcer: Enforcer) -> None:
        self._limit = limit
        self._enforcer = enforcer
        self.active = 0
        self.overflow = 0

    @property
    def limit(self) -> int:
        limit = self._limit
        return limit if isinstance(limit, int) else limit()

    def try_acquire(self) -> Verdict:
        """Take a unit; `REJECT` when the cap is reached and enforced."""
        if not self._enforcer.sample():
            return Verdict.SKIP
        if self.active < self.limit:
            self.active += 1
            return Verdict.ADMIT
        self.overflow += 1
        verdict = self._enforcer.reject()
        if verdict is Verdict.SHADOW:
            self.active += 1  # it runs, so it uses the resource
        return verdict

    def release(self, verdict: Verdict) -> None:
        """Give back the unit taken by an `ADMIT` or `SHADOW` verdict."""
        if verdict is Verdict.ADMIT or verdict is Verdict.SHADOW:
            if self.active <= 0:
                raise RuntimeError("release without a matching acquire")
            self.active -= 1

    def statistics(self) -> GaugeStatistics:
        limit = self.limit
        return GaugeStatistics(
            self.active, limit, max(0, limit - self.active), self.overflow, self.active >= limit
        )


@attrs.frozen
class ResourceLimitsStatistics:
    connections: GaugeStatistics
    pending: GaugeStatistics
    requests: GaugeStatistics
    retries: GaugeStatistics
    enforcement: EnforcementStatistics


class ResourceLimits:
    """The four gauges of one upstream cluster, sharing one shadow-mode enforcer."""

    __slots__ = ("_enforcer", "config", "connections", "pending", "requests", "retries")

    def __init__(
        self, config: ResourceLimitsConfig, rand: Callable[[], float] | None = None
    ) -> None:
        self.config = config
        self._enforcer = Enforcer(config.enforcement, rand)
        self.connections = Gauge(config.max_connections, self._enforcer)
        self.pending = Gauge(config.max_pending_requests, self._enforcer)
        self.requests = Gauge(config.max_requests, self._enforcer)
        budget = config.retry_budget
        if budget is None:
            self.retries = Gauge(config.max_retries, self._enforcer)
        else:
            self.retries = Gauge(self._budget_limit(budget), self._enforcer)

    def _budget_limit(self, budget: RetryBudget) -> Callable[[], int]:
        share = budget.budget_percent / 100.0
        floor = budget.min_retry_concurrency

        def limit() -> int:
            active = self.requests.active + self.pending.active
            return max(floor, math.floor(share * active))

        return limit

    def statistics(self) -> ResourceLimitsStatistics:
        return ResourceLimitsStatistics(
            self.connections.statistics(),
            self.pending.statistics(),
            self.requests.statistics(),
            self.retries.statistics(),
            self._enforcer.statistics(),
        )
