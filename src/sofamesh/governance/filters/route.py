"""Routing (the *logical* level): match a call to a route and decide where it may go.

Routes belong to a service and are tried in document order; the first whose
`match` holds wins (Envoy's route table). Matching looks at the method (exact,
prefix or full regex), headers (exact, prefix, regex, present/absent) and the
caller app. The winner then:

- answers at once with its `direct_response` (Envoy's ``direct_response``), or
- tightens the call's deadline to its `timeout` (the service policy's timeout
  still applies: the tighter wins), and
- puts a `select.Target` on the invocation (`inv.route`): the weighted `split`
  entry drawn for this call, or the tag router's subsets for the request's
  tag, with the service's load-balancing rule and the route's retry policy.
  `BalanceFilter` and `RetryFilter` read it further down the chain.

A call no route matches takes the service's default target when the service
has a `load_balancing` rule, else none (the cluster picks as usual).
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Awaitable, Callable
from functools import partial
from operator import methodcaller
from typing import TYPE_CHECKING, Any

from sofamesh.chain import Handler, completed
from sofamesh.clock import Clock
from sofamesh.governance.filters.keyed import BoundedDict, Carry, aliases
from sofamesh.governance.filters.mirror import MirrorFilter
from sofamesh.governance.filters.response import static_result
from sofamesh.governance.filters.retry import RetryBudgetState
from sofamesh.governance.filters.select import BalancingLeaf, SubsetFilter, Target, tag_subsets
from sofamesh.governance.kind import Build, Compose, FilterSlot, RuleKind
from sofamesh.governance.routing_rules import (
    Balancing,
    HeaderMatch,
    RetryPolicy,
    Route,
    StringMatch,
    Subset,
)
from sofamesh.governance.rules import rule_name
from sofamesh.model import Headers, Invocation, Result

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder

NO_RETRY = RetryPolicy(attempts=1, budget=None)  # mirrored copies are tried once


class RouteLeaf:
    """A route's counters; they survive a reload that leaves the route unchanged."""

    def __init__(self) -> None:
        self.name = ""
        self.matched = 0
        self.direct = 0
        self.mirrored = 0
        self.mirror_dropped = 0
        self.retries = 0
        self.retry_overflow = 0
        self.per_try_timeouts = 0

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "name"} | {"rule": self.name}


def _string_matcher(m: StringMatch) -> Callable[[str], object]:
    """A test whose result is true when `m` matches: each a C call, no Python frame."""
    if m.exact is not None:
        return m.exact.__eq__
    if m.prefix is not None:
        return methodcaller("startswith", m.prefix)
    return re.compile(m.regex or "").fullmatch  # a match object, or None


def _header_matcher(h: HeaderMatch) -> Callable[[Headers], bool]:
    name = h.name
    if h.present is not None:
        want = h.present
        return lambda headers: (headers.get(name) is not None) is want
    test = _string_matcher(StringMatch(exact=h.exact, prefix=h.prefix, regex=h.regex))
    return lambda headers: (v := headers.get(name)) is not None and bool(test(v))


class CompiledRoute:
    """One route, ready for per-call matching and target choice."""

    def __init__(
        self,
        rule: Route,
        leaf: RouteLeaf,
        balancing: BalancingLeaf | None,
        budget: RetryBudgetState | None,
        rand: Callable[[], float],
    ) -> None:
        self.rule = rule
        self.leaf = leaf
        self.rand = rand
        self._balancing = balancing
        self._budget = budget
        m = rule.match
        self._method = _string_matcher(m.method) if m.method else None
        self._headers = tuple(_header_matcher(h) for h in m.headers)
        self._callers = frozenset(m.callers)
        # A route matched by its method alone (the common one): the filter asks this test
        # itself, a C call, instead of `matches`.
        self.method_only = self._method if not (self._headers or self._callers) else None
        # A method prefix alone: `str.startswith` called in the filter (a specialised method
        # call) is cheaper than the same test through `methodcaller`.
        self.method_prefix = (
            m.method.prefix if m.method is not None and self.method_only is not None else None
        )
        self._mirror = self._mirror_target(rule.mirror.subset) if rule.mirror else None
        fallback = (None,) if rule.subset_fallback == "any" else ()
        # The weighted split, which the filter draws from: targets and their running weights
        # (none for a split of one entry, which `target` answers without a draw).
        self.targets = [self._target((SubsetFilter.of(w.subset), *fallback)) for w in rule.split]
        # As floats: the draw is a float, and `bisect` compares a float with a float faster.
        self.cumulative: list[float] = []
        for w in rule.split if len(rule.split) > 1 else ():
            self.cumulative.append((self.cumulative[-1] if self.cumulative else 0.0) + w.weight)
        self._default = self._target((None,))
        self._tags: BoundedDict[tuple[str, bool], Target] = BoundedDict(1024)

    def _target(self, subsets: tuple[SubsetFilter | None, ...]) -> Target:
        target = Target(
            self.leaf.name, subsets, self._balancing, self.rule.retry, self._budget, self.leaf
        )
        if self._mirror is not None and self.rule.mirror is not None:
            target.mirror = (self._mirror, self.rule.mirror.percentage / 100.0)
        return target

    def _mirror_target(self, subset: Subset) -> Target:
        return Target(
            self.leaf.name, (SubsetFilter.of(subset),), self._balancing, NO_RETRY, None, self.leaf
        )

    def matches(self, inv: Invocation) -> bool:
        if self._method is not None and not self._method(inv.method):
            return False
        if self._callers and inv.caller not in self._callers:
            return False
        # No generator for the common route without header conditions.
        return not self._headers or all(test(inv.headers) for test in self._headers)

    def target(self, inv: Invocation) -> Target:
        """A route without a weighted draw: its one split entry, the tag router's subsets for
        the call, or every endpoint."""
        if self.targets:
            return self.targets[0]
        tag = self.rule.tag
        if tag is None:
            return self._default
        value = inv.headers.get(tag.header) or ""
        force = tag.force or (inv.headers.get(tag.force_header) or "").lower() == "true"
        found = self._tags.get((value, force))
        if found is None:
            found = self._tags.put((value, force), self._target(tag_subsets(tag, value, force)))
        return found


class RouteTable:
    """Every service's routes and default targets, for one generation of rules."""

    def __init__(
        self,
        routes: tuple[Route, ...],
        balancing: tuple[Balancing, ...],
        carry: Carry,
        carry_lb: Carry,
        carry_budget: Carry,
        *,
        local_zone: str,
        rand: Callable[[], float] | None,
    ) -> None:
        draw = rand or random.random
        self.balancing: dict[str, BalancingLeaf] = {
            b.service: carry_lb.take(b, partial(BalancingLeaf, b, local_zone, rand))
            for b in balancing
        }
        by_service: dict[str, list[CompiledRoute]] = {}
        for i, rule in enumerate(routes):
            leaf = carry.take(rule, RouteLeaf)
            leaf.name = rule_name("routes", i, rule.name)
            budget = None
            if rule.retry is not None and rule.retry.budget is not None:
                spec = (rule.service, rule.retry.budget)
                budget = carry_budget.take(spec, partial(RetryBudgetState, rule.retry.budget))
            compiled = CompiledRoute(rule, leaf, self.balancing.get(rule.service), budget, draw)
            by_service.setdefault(rule.service, []).append(compiled)
        self.routes = {a: tuple(rs) for s, rs in by_service.items() for a in aliases(s)}
        self.defaults = {
            a: Target("", (None,), lb) for s, lb in self.balancing.items() for a in aliases(s)
        }

    def leaves(self) -> list[RouteLeaf]:
        return list({id(r.leaf): r.leaf for rs in self.routes.values() for r in rs}.values())


class RouteFilter:
    """Match the call to a route; answer directly, or set the target, deadline and retries."""

    def __init__(self, holder: Holder, clock: Clock) -> None:
        self._holder = holder
        self._clock = clock

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        holder, now_of, bisect_right = self._holder, self._clock.now, bisect.bisect_right

        def route(inv: Invocation) -> Awaitable[Result]:
            # Decides on the way down only: no coroutine frame of its own, and the matched
            # route taken here rather than in calls of its own.
            table = holder.current.routes
            method = inv.method
            for compiled in table.routes.get(inv.service, ()):
                prefix = compiled.method_prefix
                if prefix is not None:
                    if method.startswith(prefix):
                        break
                    continue
                test = compiled.method_only
                if test(method) if test is not None else compiled.matches(inv):
                    break
            else:
                inv.route = table.defaults.get(inv.service)
                return call_next(inv)
            rule = compiled.rule
            compiled.leaf.matched += 1
            if rule.direct_response is not None:
                return _direct(compiled)
            if rule.timeout is not None:
                now = inv.now  # the call's reading (`sofamesh.chain`), else the clock's
                limit = (now_of() if now is None else now) + rule.timeout
                if inv.deadline is None or limit < inv.deadline:
                    inv.deadline = limit
            cumulative = compiled.cumulative
            if cumulative:  # the weighted split's draw
                point = compiled.rand() * cumulative[-1]
                inv.route = compiled.targets[bisect_right(cumulative, point)]
            else:
                inv.route = compiled.target(inv)
            return call_next(inv)

        return route


def _direct(route: CompiledRoute) -> Awaitable[Result]:
    leaf = route.leaf
    leaf.direct += 1
    response = route.rule.direct_response
    assert response is not None
    return completed(static_result(response, f"direct response of route {leaf.name}"))


def _build(b: Build) -> RouteTable:
    doc, carries, opts = b.document, b.carries, b.options
    return RouteTable(
        doc.routes,
        doc.load_balancing,
        carries["routes"],
        carries["balancing"],
        carries["budgets"],
        local_zone=opts.local_zone,
        rand=opts.rand,
    )


def _rows(states: tuple[Any, ...], now: float) -> dict[str, list[dict[str, Any]]]:
    table: RouteTable = states[0]
    return {
        "routes": [leaf.describe() for leaf in table.leaves()],
        "load_balancing": [lb.describe() for lb in table.balancing.values()],
    }


def _mirror(c: Compose) -> MirrorFilter | None:
    return MirrorFilter(c.task_group, rand=c.rand) if c.task_group is not None else None


KIND = RuleKind(
    name="routes",
    sections=("routes", "load_balancing"),
    carries=("routes", "balancing", "budgets"),
    build=_build,
    snapshot=_rows,
    in_use=lambda doc, g: bool(doc.routes or doc.load_balancing),
    filters=(
        # Direct response, route deadline, the target for balancing and retries.
        FilterSlot(20, ("outbound",), lambda c: RouteFilter(c.governance, c.clock)),
        # Copies of calls, sent in the composer's task group; they skip the caller's rules.
        # Composed only when some route mirrors: otherwise it would look at every call for nothing.
        FilterSlot(
            90,
            ("outbound",),
            _mirror,
            in_use=lambda doc, g: any(r.mirror is not None for r in doc.routes),
        ),
    ),
)
