"""Degradation: a fallback answers when a rule rejects the call, or instead of the provider.

A `fallbacks` rule for a service or method (the method's rule wins) watches
the results coming back from the filters below it. When one has a status in
`when` -- by default the governance rejections: ``rate_limited``,
``circuit_open``, ``overloaded`` -- the fallback answers instead. With
`force` (manual degradation, Dubbo's ``mock=force``) the provider is not
called at all; `enforcement` gives that switch a shadow mode and a share.

The answer is, in order: a fallback registered in code for the service and
method (`Governance.set_fallback`: a `Result`, a `StaticResponse`, or a
callable ``(inv, result) -> Result`` that may be async; result is None when
forced), else the rule's static `response` (code, headers, body), else the
original result passes unchanged (a forced call with no answer gets
`Status.UNAVAILABLE` naming the rule). Fallback responses carry
`x-sofamesh-fallback: <rule>`. A code fallback without any rule answers on
the default triggers.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from sofamesh.chain import Handler
from sofamesh.governance.enforcement_rules import FallbackRule
from sofamesh.governance.filters.keyed import Carry, ScopeIndex
from sofamesh.governance.filters.response import FALLBACK_HEADER, make_result, static_result
from sofamesh.governance.kind import DIRECTIONS, Build, FilterSlot, RuleKind
from sofamesh.governance.routing_rules import StaticResponse
from sofamesh.governance.rules import rule_name
from sofamesh.governance.shadow import Enforcer
from sofamesh.model import Invocation, Result, Status

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder

# What a fallback gives: a ready `Result`, a `StaticResponse`, or just a body (bytes or
# str, answered as code 200 in the call's protocol).
Answer = Result | StaticResponse | bytes | str
FallbackFn = Callable[[Invocation, Result | None], Answer | Awaitable[Answer]]
Fallback = Answer | FallbackFn
DEFAULT_TRIGGERS = frozenset({Status.RATE_LIMITED, Status.CIRCUIT_OPEN, Status.OVERLOADED})


class FallbackLeaf:
    def __init__(self, rule: FallbackRule, rand: Callable[[], float] | None) -> None:
        self.rule = rule
        self.name = ""
        self.triggers = frozenset(Status(s) for s in rule.when)
        self.enforcer = Enforcer(rule.enforcement, rand)
        self.served = 0
        self.forced = 0

    def describe(self) -> dict[str, Any]:
        st = self.enforcer.statistics()
        return {
            "rule": self.name,
            "service": self.rule.service,
            "method": self.rule.method,
            "direction": self.rule.direction,
            "force": self.rule.force,
            "served": self.served,
            "forced": self.forced,
            "shadowed": st.shadowed,
            "skipped": st.skipped,
        }


FallbackIndex = ScopeIndex[FallbackLeaf, FallbackLeaf]


def build_fallbacks(
    rules: list[tuple[int, FallbackRule]], carry: Carry, rand: Callable[[], float] | None
) -> FallbackIndex:
    entries = []
    for i, rule in rules:
        leaf = carry.take(rule, partial(FallbackLeaf, rule, rand))
        leaf.name = rule_name("fallbacks", i, rule.name)
        entries.append((rule.service, rule.method, leaf))
    return ScopeIndex(entries, lambda leaf, _m: leaf)


class DegradeFilter:
    def __init__(self, holder: Holder, direction: str) -> None:
        self._holder = holder
        self._direction = direction
        self._rules: Callable[[Any], FallbackIndex] = operator.attrgetter(f"{direction}.fallbacks")

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        found = self._rules(self._holder.current).lookup(inv.service, inv.method)
        code = self._holder.code_fallbacks
        if not found and not code:
            return await call_next(inv)
        leaf = found[-1] if found else None
        fallback = _registered(code, self._direction, inv) if code else None
        if leaf is None and fallback is None:
            return await call_next(inv)
        if (
            leaf is not None
            and leaf.rule.force
            and leaf.enforcer.sample()
            and leaf.enforcer.enforce()
        ):
            leaf.forced += 1
            return await _answer(leaf, fallback, inv, None)
        result = await call_next(inv)
        if result.status not in (leaf.triggers if leaf is not None else DEFAULT_TRIGGERS):
            return result
        return await _answer(leaf, fallback, inv, result)


def _registered(
    code: Mapping[tuple[str, str, str], Fallback], direction: str, inv: Invocation
) -> Fallback | None:
    return code.get((direction, inv.service, inv.method)) or code.get((direction, inv.service, ""))


async def _answer(
    leaf: FallbackLeaf | None, fallback: Fallback | None, inv: Invocation, result: Result | None
) -> Result:
    name = leaf.name if leaf is not None else "(registered in code)"
    detail = f"{inv.service}: answered by fallback {name}"
    mark = ((FALLBACK_HEADER, name),)
    if fallback is not None:
        answer = await _call(fallback, inv, result, detail, mark)
    elif leaf is not None and leaf.rule.response is not None:
        answer = static_result(leaf.rule.response, detail, mark)
    elif result is None:
        return Result.failure(Status.UNAVAILABLE, f"{inv.service}: degraded by rule {name}")
    else:
        return result
    if leaf is not None:
        leaf.served += 1
    answer.headers.set(FALLBACK_HEADER, name)
    return answer


async def _call(
    fallback: Fallback,
    inv: Invocation,
    result: Result | None,
    detail: str,
    mark: tuple[tuple[str, str], ...],
) -> Result:
    out = fallback(inv, result) if callable(fallback) else fallback
    if inspect.isawaitable(out):
        out = await out
    if isinstance(out, Result):
        return out.copy()
    if isinstance(out, bytes | str):
        body = out.encode() if isinstance(out, str) else out
        return make_result(Status.OK, 200, list(mark), body, detail)
    if isinstance(out, StaticResponse):
        return static_result(out, detail, mark)
    raise TypeError(f"a fallback must give a Result, StaticResponse, bytes or str, not {out!r}")


def _build(b: Build) -> FallbackIndex:
    return build_fallbacks(b.mine(b.document.fallbacks), b.carries["fallbacks"], b.options.rand)


KIND = RuleKind(
    name="fallbacks",
    sections=("fallbacks",),
    carries=("fallbacks",),
    build=_build,
    snapshot=lambda sides, now: {
        "fallbacks": [leaf.describe() for side in sides for leaf in side.leaves()]
    },
    in_use=lambda doc, g: bool(doc.fallbacks or g.code_fallbacks),
    # A fallback answers when a rule below it rejects (a static answer inbound).
    filters=(FilterSlot(30, DIRECTIONS, lambda c: DegradeFilter(c.governance, c.direction)),),
    per_direction=True,
)
