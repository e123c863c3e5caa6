"""Hot parameters: a QPS limit per value of a header or query argument (Sentinel ParamFlowRule).

The value comes from the request header `header`, or from the query argument
`query` of an HTTP request's target (the first occurrence, URL-decoded). A
call without the parameter is not limited by the rule, as Sentinel passes a
call whose parameter is null. Rules are checked service-wide first, then the
method's; the first to reject answers `Status.RATE_LIMITED` naming the rule
and the value. Tokens taken by earlier rules are not returned (Sentinel's
ParamFlowSlot does not roll back either).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.governance.enforcement_rules import HotParamRule
from sofamesh.governance.filters.keyed import Carry, ScopeIndex
from sofamesh.governance.hotparam import HotParamLimiter
from sofamesh.governance.kind import DIRECTIONS, Build, FilterSlot, RuleKind
from sofamesh.governance.rules import rule_name
from sofamesh.governance.shadow import Verdict
from sofamesh.model import Invocation, Result, Status

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder


class HotParamLeaf:
    """One rule's per-value buckets (shared by every method for ``method: "*"``)."""

    def __init__(self, rule: HotParamRule, rand: Callable[[], float] | None) -> None:
        self.rule = rule
        self.name = ""
        self.limiter = HotParamLimiter(rule.config(), rand)

    def value(self, inv: Invocation) -> str | None:
        if self.rule.header:
            return inv.headers.get(self.rule.header)
        return query_value(inv.payload, self.rule.query)

    def describe(self) -> dict[str, Any]:
        st = self.limiter.statistics()
        return {
            "rule": self.name,
            "service": self.rule.service,
            "method": self.rule.method,
            "direction": self.rule.direction,
            "param": self.rule.header or f"?{self.rule.query}",
            "tracked_values": st.tracked_values,
            "passed": st.passed,
            "rejected": st.enforcement.rejected,
            "shadowed": st.enforcement.shadowed,
            "skipped": st.enforcement.skipped,
        }


def query_value(payload: object, name: str) -> str | None:
    """The first value of query argument `name` in an HTTP request's target, or None."""
    target = getattr(payload, "target", None)
    if not isinstance(target, str):
        return None
    _, sep, query = target.partition("?")
    if not sep:
        return None
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote_plus(key) == name:
            return unquote_plus(value)
    return None


HotParamIndex = ScopeIndex[HotParamLeaf, HotParamLeaf]


def build_hot_params(
    rules: list[tuple[int, HotParamRule]], carry: Carry, rand: Callable[[], float] | None
) -> HotParamIndex:
    entries = []
    for i, rule in rules:
        leaf = carry.take(rule, partial(HotParamLeaf, rule, rand))
        leaf.name = rule_name("hot_params", i, rule.name)
        entries.append((rule.service, rule.method, leaf))
    return ScopeIndex(entries, lambda leaf, _m: leaf)


class HotParamFilter:
    def __init__(self, holder: Holder, clock: Clock, direction: str) -> None:
        self._holder = holder
        self._clock = clock
        self._rules: Callable[[Any], HotParamIndex] = operator.attrgetter(f"{direction}.hot_params")

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        found = self._rules(self._holder.current).lookup(inv.service, inv.method)
        if found:
            now = self._clock.now()
            for leaf in found:
                value = leaf.value(inv)
                if value is not None and leaf.limiter.try_acquire(value, now) is Verdict.REJECT:
                    param = leaf.rule.header or leaf.rule.query
                    return Result.failure(
                        Status.RATE_LIMITED,
                        f"{inv.service}: rate limited by rule {leaf.name} for {param}={value!r}",
                    )
        return await call_next(inv)


def _build(b: Build) -> HotParamIndex:
    return build_hot_params(b.mine(b.document.hot_params), b.carries["hot_params"], b.options.rand)


KIND = RuleKind(
    name="hot_params",
    sections=("hot_params",),
    carries=("hot_params",),
    build=_build,
    snapshot=lambda sides, now: {
        "hot_params": [leaf.describe() for side in sides for leaf in side.leaves()]
    },
    in_use=lambda doc, g: bool(doc.hot_params),
    # Per header or argument value.
    filters=(
        FilterSlot(
            50,
            DIRECTIONS,
            lambda c: HotParamFilter(c.governance, c.clock, c.direction),
        ),
    ),
    per_direction=True,
)
