"""The retry filter: each try to an endpoint not yet tried, below `TimeoutFilter`, above balancing.

Without a retry plan, failures where the request provably never reached a
provider (`Status.CONNECT_FAILED`) are retried for every call, even
non-idempotent ones, up to the service's `policy.connect_retries`. A
connection reset (`Status.UPSTREAM_RESET`) is retried only for idempotent
calls (HTTP GET, PUT, DELETE, ...), where a provider that did see the request
may safely see it twice: that covers a provider killed between accepting a
connection and answering.

A call may carry a `RetryPlan` instead (governance gives one for a route with
a retry policy, through `plans`): the plan says which results are retried, how
many tries in all, the back-off before each retry and the timeout of each
try, and it admits each retry (retry budgets, retry limits) and counts them.
The filter owns the loop: a retry never starts when it could not begin before
the call's deadline, and `BalanceFilter` excludes the endpoints already tried
(`inv.tried`).

Which status codes are a protocol's gateway errors (HTTP 502/503/504, gRPC
UNAVAILABLE, Bolt SERVER_THREADPOOL_BUSY) is the protocol's to say: the
runtime passes a `gateway_codes(protocol)` lookup, handed to the plan.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.model import Invocation, Result, Status
from sofamesh.stats import Stats

GatewayCodes = Callable[[str], frozenset[int]]
Release = Callable[[], None]


NO_CODES: frozenset[int] = frozenset()
# Read on every call: `Status.OK` is `EnumType.__getattr__`'s slow path on Python 3.11.
_OK = Status.OK


def no_gateway_codes(_protocol: str) -> frozenset[int]:
    return NO_CODES


class ConnectRetries(Protocol):
    """What the filter reads of a service's policy (`config.model.PolicyConfig` has it)."""

    @property
    def connect_retries(self) -> int: ...


class CallCount(Protocol):
    """A count of calls in flight (a retry budget's requests)."""

    requests: int


class RetryPlan(Protocol):
    """One call's retry policy with its accounting, as governance provides it."""

    @property
    def attempts(self) -> int:
        """Tries in all, the first included (gRPC's ``maxAttempts``)."""

    @property
    def per_try_timeout(self) -> float | None: ...

    @property
    def in_flight(self) -> CallCount | None:
        """What counts the call while it runs (a retry budget's requests), or None.

        A field rather than begin/end calls: the filter adds and takes one itself."""

    @property
    def ok_is_final(self) -> bool:
        """An OK answer is never retried: `retryable` is asked only of other answers."""

    def retryable(self, inv: Invocation, result: Result, gateway_codes: frozenset[int]) -> bool:
        """Whether a try that ended in `result` is repeated."""

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 = the first retry)."""

    def admit(self, service: str) -> Release | None:
        """A place for one more retry, and how to give it back; None when refused."""

    def retried(self) -> None: ...

    def try_timed_out(self) -> None: ...


RetryPlans = Callable[[Invocation], "RetryPlan | None"]


class PlansByRoute(Protocol):
    """Plans kept by the call's route (`inv.route`), read with one look-up; `plan` answers
    when `get` has none: it makes the route's plan once, or says again it has none."""

    def get(self, route: object, /) -> RetryPlan | None: ...

    def plan(self, inv: Invocation) -> RetryPlan | None: ...


def _no_plan(_inv: Invocation) -> None:
    return None


class RetryFilter:
    def __init__(
        self,
        policy_for: Callable[[str], ConnectRetries],
        stats: Stats,
        clock: Clock,
        *,
        gateway_codes: GatewayCodes = no_gateway_codes,
        plans: RetryPlans | None = None,
        plans_by_route: PlansByRoute | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """`plans`: a call's plan, asked on every call; `plans_by_route`: plans by route,
        read with one look-up (governance's routes). Neither: connect-failure retries only."""
        self._policy_for = policy_for
        self._stats = stats
        self._clock = clock
        self._gateway_codes = gateway_codes
        self._plans = plans
        self._by_route = plans_by_route
        self._sleep = sleep

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        # One coroutine frame for the whole loop: the first try awaits the chain below
        # directly (unless the plan has a per-try timeout), and an answer that ends the
        # call (OK, without a plan retrying OK answers) costs no call but the try itself.
        plans, connect_retries, by_plan = self._plans, self._connect_retries, self._by_plan
        attempt, by_route = self._attempt, self._by_route
        kept = by_route.get if by_route is not None else None  # a bound dict method: C only
        ask: RetryPlans = by_route.plan if by_route is not None else (plans or _no_plan)

        async def retry(inv: Invocation) -> Result:
            if kept is not None:
                route = inv.route
                plan = kept(route) if route is not None else None
                if plan is None and route is not None:
                    plan = ask(inv)
            else:
                plan = ask(inv) if plans is not None else None
            if plan is None:
                result = await call_next(inv)
                if result.status is _OK:
                    return result
                return await connect_retries(inv, call_next, result)
            count = plan.in_flight
            if count is not None:
                count.requests += 1
            try:
                if plan.per_try_timeout is None:
                    result = await call_next(inv)
                else:
                    result = await attempt(inv, call_next, plan)
                if result.status is _OK and plan.ok_is_final:
                    return result
                return await by_plan(inv, call_next, plan, result)
            finally:
                if count is not None:
                    count.requests -= 1

        return retry

    async def _connect_retries(self, inv: Invocation, call_next: Handler, result: Result) -> Result:
        """Without a plan: a try that never reached a provider (or an idempotent call's reset)
        again, up to the service's `connect_retries`."""
        retries = self._policy_for(inv.service).connect_retries
        while (
            result.status is Status.CONNECT_FAILED
            or (result.status is Status.UPSTREAM_RESET and inv.idempotent)
        ) and inv.attempt < retries:
            inv.attempt += 1
            self._stats.incr("upstream_rq_retry")
            inv.now = None  # the call's reading is from before the first try
            result = await call_next(inv)
        return result

    async def _by_plan(
        self, inv: Invocation, call_next: Handler, plan: RetryPlan, result: Result
    ) -> Result:
        """The plan's retries after a first try that ended in `result`."""
        # No gateway code is an OK answer's: the protocol's are looked up after a failure.
        codes = NO_CODES if result.status is _OK else self._gateway_codes(inv.protocol)
        while inv.attempt + 1 < plan.attempts and plan.retryable(inv, result, codes):
            release = plan.admit(inv.service)
            if release is None:
                break
            try:
                if not await self._back_off(inv, plan):
                    break
                inv.attempt += 1
                self._stats.incr("upstream_rq_retry")
                plan.retried()
                inv.now = None  # the call's reading is from before the first try and back-off
                result = await self._attempt(inv, call_next, plan)
                if codes is NO_CODES and result.status is not _OK:
                    codes = self._gateway_codes(inv.protocol)
            finally:
                release()
        return result

    async def _back_off(self, inv: Invocation, plan: RetryPlan) -> bool:
        """Wait before the next try; False if it could not start before the deadline."""
        delay = plan.backoff(inv.attempt + 1)
        if inv.deadline is not None and self._clock.now() + delay >= inv.deadline:
            return False
        if delay > 0:
            await self._sleep(delay)
        return True

    async def _attempt(self, inv: Invocation, call_next: Handler, plan: RetryPlan) -> Result:
        """One try. With a per-try timeout, the try's deadline is the call's while it runs:
        every wait below ends by it (and the next hop is told), and balancing counts a try
        cut short by it against its endpoint; the scope is the backstop for waits that
        do not read the deadline."""
        per_try = plan.per_try_timeout
        if per_try is None:
            return await call_next(inv)
        deadline = inv.deadline
        try_deadline = self._clock.now() + per_try
        if deadline is None or try_deadline < deadline:
            inv.deadline = try_deadline
        timed_out = True
        try:
            with anyio.move_on_after(per_try):
                result = await call_next(inv)
                timed_out = result.status is Status.TIMEOUT and inv.deadline == try_deadline
        finally:
            inv.deadline = deadline
        if not timed_out:
            return result
        plan.try_timed_out()
        return Result.failure(
            Status.TIMEOUT,
            f"{inv.service}: attempt {inv.attempt + 1} did not answer within the per-try timeout "
            f"of {per_try * 1000:.0f} ms",
            inv.endpoint,
        )
