"""Rate limiting per service, method and caller app: Sentinel's FlowRule, inbound or outbound.

Resources are (service, method), found as `keyed.ScopeIndex` says: the
service-wide resource, then the method's. Within a resource the `caller` of a
rule follows Sentinel's ``limitApp``: ``"default"`` rules count every caller
together (Sentinel's cluster node), an app name counts only that caller's
calls (its origin node), and ``"other"`` gives *each* caller no rule of the
resource names a limiter of its own, in a bounded LRU of callers (as in
Sentinel, a call without a caller is not "other"). The call passes through
every rule that applies and is admitted only if every limiter admits;
otherwise the admissions already made are cancelled (Sentinel counts a pass
only after every slot passed) and the call is answered with
`Status.RATE_LIMITED` and a detail naming the rule (HTTP 429). Paced delays
add up, as Sentinel's controllers sleep one after another.

Pacing (`pacing`, `warm_up_pacing`): the filter waits out the summed delay
itself (`sleep`, injectable), but never past the caller's deadline: a call
that would still be queued at its deadline is rejected at once instead.
Concurrency limits hold their slot until the call returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import cachetools

from sofamesh.chain import Handler, completed
from sofamesh.clock import Clock
from sofamesh.governance.enforcement_rules import RateLimitRule
from sofamesh.governance.filters.keyed import BoundedDict, Carry, ScopeIndex
from sofamesh.governance.kind import DIRECTIONS, Build, Compose, FilterSlot, RuleKind
from sofamesh.governance.ratelimit import FlowLimiter, Pace, build_limiter
from sofamesh.governance.rule_fields import EACH_METHOD
from sofamesh.governance.rules import rule_name
from sofamesh.model import Invocation, Result, Status

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder

ANY_CALLER = "default"
OTHER_CALLERS = "other"
Named = tuple[str, FlowLimiter]


class FlowLeaf:
    """One rule's limiter(s): per method for ``method: "*"``, per caller for ``caller: other``."""

    def __init__(self, rule: RateLimitRule, rand: Callable[[], float] | None, max_keys: int):
        self.rule = rule
        self.name = ""
        self._config = rule.config()
        self._rand = rand
        self._per_method = rule.method == EACH_METHOD
        self._per_caller = rule.caller == OTHER_CALLERS
        self._one = (
            None if self._per_method or self._per_caller else build_limiter(self._config, rand)
        )
        self._many: cachetools.LRUCache[tuple[str, str], FlowLimiter] = cachetools.LRUCache(
            max_keys
        )

    def limiter(self, method: str, caller: str) -> FlowLimiter:
        if self._one is not None:
            return self._one
        key = (method if self._per_method else "", caller if self._per_caller else "")
        found = self._many.get(key)
        if found is None:
            found = self._many[key] = build_limiter(self._config, self._rand)
        return found

    def limiters(self) -> Iterator[tuple[str, str, FlowLimiter]]:
        if self._one is not None:
            yield self.rule.method, self.rule.caller, self._one
        else:
            for (method, caller), lim in list(self._many.items()):
                yield method or self.rule.method, caller or self.rule.caller, lim

    def describe(self, now: float) -> list[dict[str, Any]]:
        out = []
        for method, caller, lim in self.limiters():
            st = lim.statistics(now)
            out.append(
                {
                    "rule": self.name,
                    "service": self.rule.service,
                    "method": method,
                    "caller": caller,
                    "direction": self.rule.direction,
                    "passed": st.passed,
                    "in_flight": st.in_flight,
                    "delayed": st.delayed,
                    "rejected": st.enforcement.rejected,
                    "shadowed": st.enforcement.shadowed,
                    "skipped": st.enforcement.skipped,
                }
            )
        return out


class FlowResource:
    """The rules of one resource, ordered as Sentinel checks them."""

    def __init__(self, leaves: list[FlowLeaf]) -> None:
        order = {ANY_CALLER: 0, OTHER_CALLERS: 2}
        self.leaves = sorted(leaves, key=lambda leaf: order.get(leaf.rule.caller, 1))
        self.named = frozenset(
            leaf.rule.caller
            for leaf in leaves
            if leaf.rule.caller not in (ANY_CALLER, OTHER_CALLERS)
        )

    def for_call(self, method: str, caller: str) -> Iterator[Named]:
        for leaf in self.leaves:
            c = leaf.rule.caller
            if c in (ANY_CALLER, caller) or (
                c == OTHER_CALLERS and caller and caller not in self.named
            ):
                yield leaf.name, leaf.limiter(method, caller)


class FlowIndex:
    """The rate limits of one direction, found per (service, method, caller)."""

    def __init__(
        self,
        rules: list[tuple[int, RateLimitRule]],
        carry: Carry,
        rand: Callable[[], float] | None,
        max_keys: int,
    ) -> None:
        grouped: dict[tuple[str, str], list[FlowLeaf]] = {}
        self.leaves: list[FlowLeaf] = []
        for i, rule in rules:
            leaf = carry.take(rule, partial(FlowLeaf, rule, rand, max_keys))
            leaf.name = rule_name("rate_limits", i, rule.name)
            grouped.setdefault((rule.service, rule.method), []).append(leaf)
            self.leaves.append(leaf)
        self._scope: ScopeIndex[FlowResource, FlowResource] = ScopeIndex(
            ((s, m, FlowResource(ls)) for (s, m), ls in grouped.items()), lambda r, _m: r
        )
        self.services = self._scope.services
        # A service whose every limit is service-wide and for any caller, one limiter each:
        # what applies to all its calls, found by the name alone (no key tuple per call).
        self.whole = {
            s: tuple(n for r in resources for n in r.for_call("", ""))
            for s, resources in self._scope.whole.items()
            if all(leaf.rule.caller == ANY_CALLER for r in resources for leaf in r.leaves)
        }
        # What applies to (service, method, caller); the filter reads a hit itself.
        self.cache: BoundedDict[tuple[str, str, str], tuple[Named, ...]] = BoundedDict(max_keys)

    def lookup(self, service: str, method: str, caller: str) -> tuple[Named, ...]:
        if service not in self.services:
            return ()
        key = (service, method, caller)
        found = self.cache.get(key)
        if found is None:
            resources = self._scope.lookup(service, method)
            found = self.cache.put(
                key, tuple(n for r in resources for n in r.for_call(method, caller))
            )
        return found


class FlowFilter:
    """Admit, pace or reject each call by the rate limits of one direction."""

    def __init__(
        self,
        holder: Holder,
        clock: Clock,
        direction: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._holder = holder
        self._clock = clock
        # The side read as an attribute in the handler (a dotted `attrgetter` costs more).
        self._outbound = direction == "outbound"
        self._sleep = sleep

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        holder, outbound, now_of, held, several = (
            self._holder, self._outbound, self._clock.now, self._held, self._several
        )  # fmt: skip

        def limit(inv: Invocation) -> Awaitable[Result]:
            state = holder.current
            index: FlowIndex = (state.outbound if outbound else state.inbound).rate_limits
            found = index.whole.get(inv.service)  # service-wide limits only: by the name
            if found is None:
                if inv.service not in index.services:
                    return call_next(inv)
                found = index.cache.get((inv.service, inv.method, inv.caller))  # `lookup`'s hit
                if found is None:
                    found = index.lookup(inv.service, inv.method, inv.caller)
            if not found:
                return call_next(inv)
            if len(found) > 1:
                return several(found, inv, call_next)
            name, limiter = found[0]  # the common case, without lists
            now = inv.now  # the call's reading (`sofamesh.chain`), else the clock's
            if now is None:
                now = now_of()
            pace = limiter.try_acquire(now)
            if not pace.admitted:
                return completed(_limited(name, inv))
            if pace.delay > 0.0 or limiter.holds_calls:  # float with float: specialised
                return held(name, limiter, pace, now, inv, call_next)
            # A QPS admission has nothing to give back: no coroutine frame for the call.
            return call_next(inv)

        return limit

    async def _held(
        self,
        name: str,
        limiter: FlowLimiter,
        pace: Pace,
        now: float,
        inv: Invocation,
        call_next: Handler,
    ) -> Result:
        """The call with a pacing wait first, or a concurrency slot given back after."""
        if pace.delay > 0:
            rejected = await self._wait(inv, pace.delay, [(limiter, pace)], now, name)
            if rejected is not None:
                return rejected
        try:
            return await call_next(inv)
        finally:
            limiter.release(pace)

    async def _several(
        self, found: tuple[Named, ...], inv: Invocation, call_next: Handler
    ) -> Result:
        now = self._clock.now()
        held: list[tuple[FlowLimiter, Pace]] = []
        delay = 0.0
        pacer = ""
        for name, limiter in found:
            pace = limiter.try_acquire(now)
            if not pace.admitted:
                _cancel(held, now)
                return _limited(name, inv)
            held.append((limiter, pace))
            if pace.delay > 0:
                delay += pace.delay
                pacer = name
        if delay > 0:
            rejected = await self._wait(inv, delay, held, now, pacer)
            if rejected is not None:
                return rejected
        try:
            return await call_next(inv)
        finally:
            for limiter, pace in held:
                limiter.release(pace)

    async def _wait(
        self,
        inv: Invocation,
        delay: float,
        held: list[tuple[FlowLimiter, Pace]],
        now: float,
        rule: str,
    ) -> Result | None:
        if inv.deadline is not None and now + delay > inv.deadline:
            _cancel(held, now)
            return Result.failure(
                Status.RATE_LIMITED,
                f"{inv.service}: rate limited by rule {rule}: its {delay * 1000:.0f} ms pacing "
                "wait would pass the call's deadline",
            )
        try:
            await self._sleep(delay)
        except BaseException:
            _cancel(held, self._clock.now())
            raise
        inv.now = None  # taken before the wait
        return None


def _limited(name: str, inv: Invocation) -> Result:
    return Result.failure(Status.RATE_LIMITED, f"{inv.service}: rate limited by rule {name}")


def _cancel(held: list[tuple[FlowLimiter, Pace]], now: float) -> None:
    for limiter, pace in held:
        limiter.cancel(pace, now)


def _build(b: Build) -> FlowIndex:
    opts = b.options
    rules = b.mine(b.document.rate_limits)
    return FlowIndex(rules, b.carries["rate_limits"], opts.rand, opts.max_keys)


def _filter(c: Compose) -> FlowFilter:
    return FlowFilter(c.governance, c.clock, c.direction, sleep=c.sleep)


KIND = RuleKind(
    name="rate_limits",
    sections=("rate_limits",),
    carries=("rate_limits",),
    build=_build,
    snapshot=lambda sides, now: {
        "rate_limits": [row for side in sides for leaf in side.leaves for row in leaf.describe(now)]
    },
    in_use=lambda doc, g: bool(doc.rate_limits),
    # QPS, warm-up, pacing, concurrency.
    filters=(FilterSlot(40, DIRECTIONS, _filter),),
    per_direction=True,
)
