"""A route's retry policy as a `RetryPlan` for `upstream/retry.py`'s `RetryFilter`.

`RoutePlans` gives the retry filter a plan, kept by route, for a call whose `inv.route`
carries a `RetryPolicy`; other calls get the filter's connect-failure retries. A plan
tries the call up to `attempts` times (the first included, as gRPC's
``maxAttempts``):

- **Which failures** (`retry_on`, Envoy's ``x-envoy-retry-on`` names):
  ``connect_failure`` (the request never left: safe for every method),
  ``reset``, ``timeout`` (a per-try timeout, or a timeout from below),
  ``app_error`` (any provider error), ``gateway_error`` (the protocol's
  gateway codes, which the filter passes in: HTTP 502/503/504, gRPC
  UNAVAILABLE, Bolt SERVER_THREADPOOL_BUSY), plus `retriable_codes`. A request that may have
  reached the provider is repeated only if it is idempotent (`inv.idempotent`:
  the HTTP methods of RFC 9110 §9.2.2; RPC codecs say per call) or the policy
  sets `non_idempotent`.
- **Where**: `BalanceFilter` excludes endpoints already tried (`inv.tried`),
  so a retry never goes to the same endpoint twice while others exist.
- **When**: after a full-jitter exponential back-off, random in
  ``[0, base * (2^n - 1)]`` capped at `max_interval` (Envoy), and never past
  the call's deadline: a retry that cannot start in time is not made.
- **How many at once**: Envoy's retry budget per service -- retries in flight
  may not exceed ``max(min_retry_concurrency, budget_percent% of requests in
  flight)``; an overflowing retry is not made and is counted.
- `per_try_timeout` bounds each attempt; the overall deadline still bounds all.
- A `resource_limits` rule's `max_retries` caps retries in flight to the service too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from sofamesh.governance.filters.keyed import BoundedDict
from sofamesh.governance.filters.limits import retry_gauge
from sofamesh.governance.filters.select import Target
from sofamesh.governance.limits import Gauge, RetryBudget
from sofamesh.governance.routing_rules import RetryPolicy
from sofamesh.governance.shadow import Verdict
from sofamesh.model import Invocation, Result, Status
from sofamesh.upstream.retry import Release

if TYPE_CHECKING:
    from sofamesh.governance.filters.route import RouteLeaf
    from sofamesh.governance.filters.state import Holder

# Read on every call: `Status.OK` is `EnumType.__getattr__`'s slow path on Python 3.11.
_OK = Status.OK


class RetryBudgetState:
    """Envoy's retry budget for one service: retries in flight vs requests in flight."""

    __slots__ = ("_floor", "_share", "overflow", "requests", "retries")

    def __init__(self, budget: RetryBudget) -> None:
        self._share = budget.budget_percent / 100.0
        self._floor = budget.min_retry_concurrency
        self.requests = 0
        self.retries = 0
        self.overflow = 0

    def try_retry(self) -> bool:
        if self.retries >= max(self._floor, math.floor(self._share * self.requests)):
            self.overflow += 1
            return False
        self.retries += 1
        return True


def retryable(
    policy: RetryPolicy, inv: Invocation, result: Result, gateway_codes: frozenset[int]
) -> bool:
    """Whether `policy` repeats a call that ended in `result` (see the module docstring)."""
    status = result.status
    on = policy.retry_on
    if status is Status.CONNECT_FAILED:
        return "connect_failure" in on
    if not (policy.non_idempotent or inv.idempotent):
        return False
    if status is Status.UPSTREAM_RESET:
        return "reset" in on
    if status is Status.TIMEOUT:
        return "timeout" in on
    if status is Status.APP_ERROR or status is Status.OK:
        code = result.code
        if code in policy.retriable_codes:
            return True
        if status is Status.OK:
            return False
        return "app_error" in on or ("gateway_error" in on and code in gateway_codes)
    return False


def backoff(policy: RetryPolicy, retry: int, rand: Callable[[], float]) -> float:
    """Envoy's jittered exponential back-off before retry number `retry` (1 = first retry)."""
    b = policy.backoff
    return rand() * min(b.cap, b.base_interval * ((1 << retry) - 1))


def _admit_retry(
    budget: RetryBudgetState | None, gauge: Gauge | None, leaf: RouteLeaf | None
) -> Verdict | None:
    """Take a place for one retry in the budget and the service's retry limit, or None."""
    if budget is not None and not budget.try_retry():
        if leaf is not None:
            leaf.retry_overflow += 1
        return None
    verdict = gauge.try_acquire() if gauge is not None else Verdict.SKIP
    if verdict is Verdict.REJECT:
        if budget is not None:
            budget.retries -= 1
        if leaf is not None:
            leaf.retry_overflow += 1
        return None
    return verdict


class PolicyPlan:
    """One call's `RetryPlan`: its route's policy, budget and counters; the retry limit."""

    __slots__ = (
        "_budget",
        "_holder",
        "_leaf",
        "_ok_codes",
        "_policy",
        "_rand",
        "attempts",
        "in_flight",
        "ok_is_final",
        "per_try_timeout",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        target: Target,
        holder: Holder | None,
        rand: Callable[[], float],
    ) -> None:
        self._policy = policy
        self._budget = target.budget
        self._leaf = target.leaf
        self._holder = holder
        self._rand = rand
        self._ok_codes = bool(policy.retriable_codes)  # else an OK answer is never retried
        # Attributes, not properties: the retry filter reads them on every call.
        self.attempts = policy.attempts
        self.per_try_timeout = policy.per_try_timeout
        self.in_flight = target.budget  # the retry filter counts the call in its requests
        self.ok_is_final = not self._ok_codes

    def retryable(self, inv: Invocation, result: Result, gateway_codes: frozenset[int]) -> bool:
        if result.status is _OK and not self._ok_codes:
            return False  # the common answer, decided without the policy's walk
        return retryable(self._policy, inv, result, gateway_codes)

    def backoff(self, retry: int) -> float:
        return backoff(self._policy, retry, self._rand)

    def admit(self, service: str) -> Release | None:
        holder, budget = self._holder, self._budget
        gauge = retry_gauge(holder, service) if holder is not None else None
        held = _admit_retry(budget, gauge, self._leaf)
        if held is None:
            return None

        def release() -> None:
            if budget is not None:
                budget.retries -= 1
            if gauge is not None:
                gauge.release(held)

        return release

    def retried(self) -> None:
        if self._leaf is not None:
            self._leaf.retries += 1

    def try_timed_out(self) -> None:
        if self._leaf is not None:
            self._leaf.per_try_timeouts += 1


class RoutePlans(BoundedDict[object, "PolicyPlan | None"]):
    """The retry filter's `plans_by_route`: a plan per target whose route has a retry policy.

    A plan holds no per-call state, so the one made for a target serves every call it
    routes; a target without a retry policy is kept too, as None, and asked about once.
    """

    def __init__(self, holder: Holder | None, rand: Callable[[], float] = random.random) -> None:
        super().__init__(4096)
        self._holder = holder
        self._rand = rand

    def plan(self, inv: Invocation) -> PolicyPlan | None:
        """The plan of `inv`'s route: made and kept the first time the route is seen."""
        target = inv.route
        if target in self:
            return self[target]
        plan = None
        if isinstance(target, Target) and target.retry is not None:
            plan = PolicyPlan(target.retry, target, self._holder, self._rand)
        return self.put(target, plan)
