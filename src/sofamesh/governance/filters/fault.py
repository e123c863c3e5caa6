"""Fault injection: delay and abort a share of calls (Envoy's HTTP fault filter).

Rules apply per service, method (service-wide rules first) and, outbound,
per route (`route`: only calls that took that route). The first rule whose
draw injects anything decides the call: it is delayed, then aborted or let
through. `headers` limits a rule to calls carrying those headers, and
`from_header` lets the request itself ask for the delay or abort (Envoy's
``header_delay`` / ``header_abort``), so faults can be aimed at test traffic.

The delay is waited out here (`sleep`, injectable) but never past the
caller's deadline: a delay that would outlast it ends the call with
`Status.TIMEOUT` at the deadline, as the caller would see. An abort answers
with the rule's status and code (HTTP: the code itself). Outbound, this filter
sits inside the circuit breaker, so injected failures exercise breakers and
fallbacks as real ones would.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.governance.enforcement_rules import FaultRule
from sofamesh.governance.fault import FaultDecision, FaultInjector
from sofamesh.governance.filters.keyed import Carry, ScopeIndex
from sofamesh.governance.filters.response import make_result
from sofamesh.governance.kind import DIRECTIONS, Build, Compose, FilterSlot, RuleKind
from sofamesh.governance.rules import rule_name
from sofamesh.model import Invocation, Result, Status

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder


class FaultLeaf:
    def __init__(self, rule: FaultRule, rand: Callable[[], float] | None) -> None:
        self.rule = rule
        self.name = ""
        self.injector = FaultInjector(rule.config(), rand)

    def describe(self) -> dict[str, Any]:
        st = self.injector.statistics()
        return {
            "rule": self.name,
            "service": self.rule.service,
            "method": self.rule.method,
            "route": self.rule.route,
            "direction": self.rule.direction,
            "delays_injected": st.delays_injected,
            "aborts_injected": st.aborts_injected,
            "faults_overflow": st.faults_overflow,
            "active_faults": st.active_faults,
        }


FaultIndex = ScopeIndex[FaultLeaf, FaultLeaf]


def build_faults(
    rules: list[tuple[int, FaultRule]], carry: Carry, rand: Callable[[], float] | None
) -> FaultIndex:
    entries = []
    for i, rule in rules:
        leaf = carry.take(rule, partial(FaultLeaf, rule, rand))
        leaf.name = rule_name("faults", i, rule.name)
        entries.append((rule.service, rule.method, leaf))
    return ScopeIndex(entries, lambda leaf, _m: leaf)


class FaultFilter:
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
        self._rules: Callable[[Any], FaultIndex] = operator.attrgetter(f"{direction}.faults")
        self._sleep = sleep

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        found = self._rules(self._holder.current).lookup(inv.service, inv.method)
        if found:
            route = inv.route.name if inv.route is not None else ""
            for leaf in found:
                if leaf.rule.route and leaf.rule.route != route:
                    continue
                decision = leaf.injector.decide(inv.headers)
                if decision.injected:
                    try:
                        return await self._inject(leaf, decision, inv, call_next)
                    finally:
                        leaf.injector.finish(decision)
        return await call_next(inv)

    async def _inject(
        self, leaf: FaultLeaf, decision: FaultDecision, inv: Invocation, call_next: Handler
    ) -> Result:
        if decision.delay > 0:
            now = self._clock.now()
            if inv.deadline is not None and now + decision.delay > inv.deadline:
                await self._sleep(max(0.0, inv.deadline - now))
                return Result.failure(
                    Status.TIMEOUT,
                    f"{inv.service}: deadline passed during a {decision.delay * 1000:.0f} ms delay "
                    f"injected by rule {leaf.name}",
                )
            await self._sleep(decision.delay)
        if decision.abort is not None:
            detail = f"{inv.service}: fault injected by rule {leaf.name}"
            return make_result(decision.abort, decision.code, (), (detail + "\n").encode(), detail)
        return await call_next(inv)


def _build(b: Build) -> FaultIndex:
    return build_faults(b.mine(b.document.faults), b.carries["faults"], b.options.rand)


def _filter(c: Compose) -> FaultFilter:
    return FaultFilter(c.governance, c.clock, c.direction, sleep=c.sleep)


KIND = RuleKind(
    name="faults",
    sections=("faults",),
    carries=("faults",),
    build=_build,
    snapshot=lambda sides, now: {
        "faults": [leaf.describe() for side in sides for leaf in side.leaves()]
    },
    in_use=lambda doc, g: bool(doc.faults),
    # Inside the breaker: injected faults trip it.
    filters=(FilterSlot(80, DIRECTIONS, _filter),),
    per_direction=True,
)
