"""Retries by a route's policy; without one, `ConnectRetryFilter`'s connect-failure retries.

This filter takes the place of `upstream/retry.py`'s `ConnectRetryFilter` (below
`TimeoutFilter`, above `BalanceFilter`). A call whose `inv.route` carries a
`RetryPolicy` is tried up to `attempts` times (the first included, as gRPC's
``maxAttempts``):

- **Which failures** (`retry_on`, Envoy's ``x-envoy-retry-on`` names):
  ``connect_failure`` (the request never left: safe for every method),
  ``reset``, ``timeout`` (a per-try timeout, or a timeout from below),
  ``app_error`` (any provider error), ``gateway_error`` (the protocol's
  gateway codes: HTTP 502/503/504, gRPC UNAVAILABLE, Bolt
  SERVER_THREADPOOL_BUSY), plus `retriable_codes`. A request that may have
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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.config.model import PolicyConfig
from sofamesh.governance.filters.limits import retry_gauge
from sofamesh.governance.filters.select import Target
from sofamesh.governance.limits import Gauge, RetryBudget
from sofamesh.governance.routing_rules import RetryPolicy
from sofamesh.governance.shadow import Verdict
from sofamesh.model import Invocation, Result, Status
from sofamesh.stats import Stats
from sofamesh.upstream.retry import ConnectRetryFilter

if TYPE_CHECKING:
    from sofamesh.governance.filters.route import RouteLeaf
    from sofamesh.governance.filters.state import Holder

GATEWAY_CODES = {
    "http": frozenset({502, 503, 504}),
    "h2": frozenset({502, 503, 504}),
    "grpc": frozenset({14}),  # UNAVAILABLE
    "bolt": frozenset({0x0004}),  # SERVER_THREADPOOL_BUSY: refused before running
}


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


def retryable(policy: RetryPolicy, inv: Invocation, result: Result) -> bool:
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
        return "app_error" in on or (
            "gateway_error" in on and code in GATEWAY_CODES.get(inv.protocol, ())
        )
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


class RetryFilter:
    def __init__(
        self,
        holder: Holder | None,
        policy_for: Callable[[str], PolicyConfig],
        stats: Stats,
        clock: Clock,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._holder = holder
        self._connect_retries = ConnectRetryFilter(policy_for, stats).invoke
        self._stats = stats
        self._clock = clock
        self._sleep = sleep
        self._rand = rand

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        target = inv.route
        if not isinstance(target, Target) or target.retry is None:
            return self._connect_retries(inv, call_next)
        return self._by_policy(inv, call_next, target)

    async def _by_policy(self, inv: Invocation, call_next: Handler, target: Target) -> Result:
        assert target.retry is not None
        budget = target.budget
        if budget is None:
            return await self._retries(inv, call_next, target.retry, target, None)
        budget.requests += 1
        try:
            return await self._retries(inv, call_next, target.retry, target, budget)
        finally:
            budget.requests -= 1

    async def _retries(
        self,
        inv: Invocation,
        call_next: Handler,
        policy: RetryPolicy,
        target: Target,
        budget: RetryBudgetState | None,
    ) -> Result:
        leaf = target.leaf
        result = await self._attempt(inv, call_next, policy, leaf)
        while inv.attempt + 1 < policy.attempts and retryable(policy, inv, result):
            gauge = retry_gauge(self._holder, inv.service) if self._holder is not None else None
            held = _admit_retry(budget, gauge, leaf)
            if held is None:
                break
            try:
                if not await self._back_off(inv, policy):
                    break
                inv.attempt += 1
                self._stats.incr("upstream_rq_retry")
                if leaf is not None:
                    leaf.retries += 1
                result = await self._attempt(inv, call_next, policy, leaf)
            finally:
                if budget is not None:
                    budget.retries -= 1
                if gauge is not None:
                    gauge.release(held)
        return result

    async def _back_off(self, inv: Invocation, policy: RetryPolicy) -> bool:
        """Wait before the next try; False if it could not start before the deadline."""
        delay = backoff(policy, inv.attempt + 1, self._rand)
        if inv.deadline is not None and self._clock.now() + delay >= inv.deadline:
            return False
        if delay > 0:
            await self._sleep(delay)
        return True

    async def _attempt(
        self, inv: Invocation, call_next: Handler, policy: RetryPolicy, leaf: RouteLeaf | None
    ) -> Result:
        per_try = policy.per_try_timeout
        if per_try is None:
            return await call_next(inv)
        with anyio.move_on_after(per_try):
            return await call_next(inv)
        if leaf is not None:
            leaf.per_try_timeouts += 1
        return Result.failure(
            Status.TIMEOUT,
            f"{inv.service}: attempt {inv.attempt + 1} did not answer within the per-try timeout "
            f"of {per_try * 1000:.0f} ms",
            inv.endpoint,
        )
