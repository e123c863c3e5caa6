"""Circuit breaking per service and per method, caller side (Sentinel's DegradeRule).

The filter only asks each breaker "may this call go?" and hands the outcome
back; the state machine (`governance/breaker.py`) decides. A call is checked
against the service-wide breaker and then the method's, as Sentinel's Dubbo
adapter enters both resources. An outcome counts as failed when its status
`is_failure` (provider error, connect failure, reset, timeout), after retries:
the breaker sees what the caller sees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import cachetools

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.governance.breaker import ADMIT, BreakerState, CircuitBreaker, Permit
from sofamesh.governance.enforcement_rules import BreakerRule
from sofamesh.governance.filters.keyed import Carry, ScopeIndex
from sofamesh.governance.kind import Build, FilterSlot, RuleKind
from sofamesh.governance.rule_fields import EACH_METHOD
from sofamesh.governance.rules import rule_name
from sofamesh.model import Invocation, Result, Status

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder

Named = tuple[str, CircuitBreaker]  # (rule name, breaker)
# Read on every call: `Enum.X` is `EnumType.__getattr__`'s slow path on Python 3.11.
_CLOSED, _OK = BreakerState.CLOSED, Status.OK


class BreakerLeaf:
    """The live breaker(s) of one rule: one, or one per method for ``method: "*"``."""

    def __init__(self, rule: BreakerRule, rand: Callable[[], float] | None, max_methods: int):
        self.rule = rule
        self.name = ""
        self._config = rule.config()
        self._rand = rand
        self._one = CircuitBreaker(self._config, rand) if rule.method != EACH_METHOD else None
        self._each: cachetools.LRUCache[str, Named] = cachetools.LRUCache(max_methods)

    def at(self, method: str) -> Named:
        if self._one is not None:
            return self.name, self._one
        found = self._each.get(method)
        if found is None:
            found = self._each[method] = (self.name, CircuitBreaker(self._config, self._rand))
        return found

    def breakers(self) -> Iterator[tuple[str, CircuitBreaker]]:
        """(method, breaker) for each live breaker; method "" = the whole service."""
        if self._one is not None:
            yield self.rule.method, self._one
        else:
            yield from ((m, b) for m, (_, b) in list(self._each.items()))

    def describe(self, now: float) -> list[dict[str, Any]]:
        out = []
        for method, b in self.breakers():
            st = b.statistics(now)
            out.append(
                {
                    "rule": self.name,
                    "service": self.rule.service,
                    "method": method,
                    "state": st.state.value,
                    "opened": st.opened,
                    "admitted": st.admitted,
                    "window_calls": st.window_total,
                    "window_errors": st.window_errors,
                    "window_slow": st.window_slow,
                    "next_retry_at": st.next_retry_at,
                    "rejected": st.enforcement.rejected,
                    "shadowed": st.enforcement.shadowed,
                    "skipped": st.enforcement.skipped,
                }
            )
        return out


BreakerIndex = ScopeIndex[BreakerLeaf, Named]


def build_breakers(
    rules: tuple[BreakerRule, ...],
    carry: Carry,
    rand: Callable[[], float] | None,
    max_methods: int,
) -> BreakerIndex:
    entries = []
    for i, rule in enumerate(rules):
        leaf = carry.take(rule, partial(BreakerLeaf, rule, rand, max_methods))
        leaf.name = rule_name("breakers", i, rule.name)
        entries.append((rule.service, rule.method, leaf))
    return ScopeIndex(entries, BreakerLeaf.at, max_methods)


class BreakerFilter:
    """Reject with CIRCUIT_OPEN while a breaker is open; feed every outcome back."""

    def __init__(self, holder: Holder, clock: Clock) -> None:
        self._holder = holder
        self._clock = clock

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        holder, now_of, several = self._holder, self._clock.now, self._several

        async def guard(inv: Invocation) -> Result:
            index = holder.current.breakers
            found = index.whole.get(inv.service)  # service-wide rules only: by the name
            if found is None:
                found = index.cache.get((inv.service, inv.method))  # `lookup`'s hit, inline
                if found is None:
                    found = index.lookup(inv.service, inv.method)
            if not found:
                return await call_next(inv)
            if len(found) > 1:
                return await several(found, inv, call_next)
            name, breaker = found[0]  # the common case, without lists
            now = inv.now  # the call's reading (`sofamesh.chain`), else the clock's
            if now is None:
                now = now_of()
            if breaker.state is _CLOSED and breaker.enforcer.always:
                breaker.admitted += 1  # `allow`'s common answer, without its call
                permit = ADMIT
            else:
                permit = breaker.allow(now)
                if not permit.admitted:
                    return _open(name, inv)
            try:
                result = await call_next(inv)
            except BaseException:
                breaker.cancel(permit, now_of())
                raise
            end = now_of()
            status = result.status  # _failed, inline: this runs on every call
            failed = status is not _OK and status.is_failure
            breaker.record(permit, failed, end - now, end)  # positional: keywords cost more
            return result

        return guard

    async def _several(
        self, found: tuple[Named, ...], inv: Invocation, call_next: Handler
    ) -> Result:
        now = self._clock.now()
        permits: list[Permit] = []
        for name, breaker in found:
            permit = breaker.allow(now)
            if not permit.admitted:
                for (_, b), p in zip(found, permits, strict=False):
                    b.cancel(p, now)
                return _open(name, inv)
            permits.append(permit)
        try:
            result = await call_next(inv)
        except BaseException:
            for (_, b), p in zip(found, permits, strict=True):
                b.cancel(p, self._clock.now())
            raise
        end = self._clock.now()
        failed = _failed(result.status)
        for (_, b), p in zip(found, permits, strict=True):
            b.record(p, failed=failed, elapsed=end - now, now=end)
        return result


def _failed(status: Status) -> bool:
    # `Status.is_failure` hashes the enum in Python; an identity test first keeps OK cheap.
    return status is not _OK and status.is_failure


def _open(name: str, inv: Invocation) -> Result:
    return Result.failure(
        Status.CIRCUIT_OPEN,
        f"{inv.service}: circuit breaker {name} is open for {inv.method or 'the service'}",
    )


def _build(b: Build) -> BreakerIndex:
    opts = b.options
    return build_breakers(b.document.breakers, b.carries["breakers"], opts.rand, opts.max_keys)


KIND = RuleKind(
    name="breakers",
    sections=("breakers",),
    carries=("breakers",),
    build=_build,
    snapshot=lambda states, now: {
        "breakers": [row for leaf in states[0].leaves() for row in leaf.describe(now)]
    },
    in_use=lambda doc, g: bool(doc.breakers),
    # Sees the outcome after retries, as the caller does.
    filters=(FilterSlot(70, ("outbound",), lambda c: BreakerFilter(c.governance, c.clock)),),
)
