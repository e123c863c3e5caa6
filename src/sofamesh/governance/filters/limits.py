"""Resource limits per upstream cluster (Envoy's ``circuit_breakers.thresholds``), caller side.

`max_requests` caps the calls in flight to a service: one more is answered
`Status.OVERLOADED` (HTTP 503) naming the rule, before any time or retry is
spent on it. `max_retries` caps the retries in flight to the service; the
retry filter asks `retry_gauge(service)` before each retry. Shadow mode lets
an overflowing call through and counts it (it still holds its unit: it runs).
Connections and pending requests are the pool's own limits.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from sofamesh.chain import Handler
from sofamesh.governance.enforcement_rules import ResourceLimitRule
from sofamesh.governance.filters.keyed import Carry, aliases
from sofamesh.governance.kind import Build, FilterSlot, RuleKind
from sofamesh.governance.limits import Gauge, ResourceLimits
from sofamesh.governance.rules import rule_name
from sofamesh.governance.shadow import Verdict
from sofamesh.model import Invocation, Result, Status

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder


class LimitsLeaf:
    def __init__(self, rule: ResourceLimitRule, rand: Callable[[], float] | None) -> None:
        self.rule = rule
        self.name = ""
        self.limits = ResourceLimits(rule.config(), rand)

    def describe(self) -> dict[str, Any]:
        st = self.limits.statistics()
        return {
            "rule": self.name,
            "service": self.rule.service,
            "in_flight": st.requests.active,
            "overflow": st.requests.overflow,
            "retries_in_flight": st.retries.active,
            "retry_overflow": st.retries.overflow,
            "shadowed": st.enforcement.shadowed,
            "skipped": st.enforcement.skipped,
        }


def build_limits(
    rules: tuple[ResourceLimitRule, ...], carry: Carry, rand: Callable[[], float] | None
) -> dict[str, LimitsLeaf]:
    out: dict[str, LimitsLeaf] = {}
    for i, rule in enumerate(rules):
        leaf = carry.take(rule, partial(LimitsLeaf, rule, rand))
        leaf.name = rule_name("resource_limits", i, rule.name)
        for alias in aliases(rule.service):
            out[alias] = leaf
    return out


def retry_gauge(holder: Holder, service: str) -> Gauge | None:
    """The retries gauge of `service`, if a resource-limits rule names it."""
    leaf = holder.current.limits.get(service)
    return leaf.limits.retries if leaf is not None else None


class LimitsFilter:
    def __init__(self, holder: Holder) -> None:
        self._holder = holder

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        leaf = self._holder.current.limits.get(inv.service)
        if leaf is None:
            return await call_next(inv)
        gauge = leaf.limits.requests
        verdict = gauge.try_acquire()
        if verdict is Verdict.REJECT:
            return Result.failure(
                Status.OVERLOADED,
                f"{inv.service}: {gauge.limit} calls already in flight (rule {leaf.name})",
            )
        try:
            return await call_next(inv)
        finally:
            gauge.release(verdict)


def _build(b: Build) -> dict[str, LimitsLeaf]:
    return build_limits(b.document.resource_limits, b.carries["limits"], b.options.rand)


def _rows(states: tuple[Any, ...], now: float) -> dict[str, list[dict[str, Any]]]:
    leaves = {id(leaf): leaf for leaf in states[0].values()}  # aliases share one leaf
    return {"resource_limits": [leaf.describe() for leaf in leaves.values()]}


KIND = RuleKind(
    name="limits",
    sections=("resource_limits",),
    carries=("limits",),
    build=_build,
    snapshot=_rows,
    in_use=lambda doc, g: bool(doc.resource_limits),
    # Calls in flight per service, before the breaker counts them.
    filters=(FilterSlot(60, ("outbound",), lambda c: LimitsFilter(c.governance)),),
)
