"""One generation of rules with their live state: what every governance filter reads.

A `GovernanceState` is built from a `RulesDocument` and the previous
generation. The indices (which rules apply to which call) are rebuilt each
time -- cheap, and never shared across generations -- while the stateful
leaves (breakers, limiters, counters, hash tables) are carried over for every
rule whose value did not change (`keyed.Carry`). A holder swaps the whole
state in with one assignment; each filter reads `holder.current` once per
call, so a call never sees half of one generation and half of another
inside a filter, and a permit is always returned to the leaf that gave it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, Protocol

import attrs

from sofamesh.governance.filters.auth import AuthLeaf
from sofamesh.governance.filters.breaker import BreakerIndex, BreakerLeaf, build_breakers
from sofamesh.governance.filters.degrade import Fallback, FallbackIndex, build_fallbacks
from sofamesh.governance.filters.fault import FaultIndex, build_faults
from sofamesh.governance.filters.flow import FlowIndex
from sofamesh.governance.filters.hotparam import HotParamIndex, build_hot_params
from sofamesh.governance.filters.keyed import Carry
from sofamesh.governance.filters.limits import LimitsLeaf, build_limits
from sofamesh.governance.filters.route import RouteTable
from sofamesh.governance.rules import RulesDocument

KINDS = (
    "routes",
    "balancing",
    "budgets",
    "breakers",
    "rate_limits",
    "hot_params",
    "faults",
    "auth",
    "fallbacks",
    "limits",
)


class Holder(Protocol):
    """What filters read: the state in force, and the fallbacks registered in code."""

    current: GovernanceState
    code_fallbacks: dict[tuple[str, str, str], Fallback]


@attrs.frozen
class Options:
    """Per-process settings that are not rules: randomness (pinned in tests), the local zone."""

    rand: Callable[[], float] | None = None
    local_zone: str = ""
    max_keys: int = 10_000  # bound on per-method / per-caller / per-call-key caches


class DirectionRules:
    """The rules that apply to one direction (inbound: provider side, outbound: caller side)."""

    def __init__(
        self, doc: RulesDocument, direction: str, carries: dict[str, Carry], opts: Options
    ) -> None:
        def mine(rules: tuple[Any, ...]) -> list[tuple[int, Any]]:
            return [(i, r) for i, r in enumerate(rules) if r.direction == direction]

        rand = opts.rand
        self.rate_limits = FlowIndex(
            mine(doc.rate_limits), carries["rate_limits"], rand, opts.max_keys
        )
        self.hot_params: HotParamIndex = build_hot_params(
            mine(doc.hot_params), carries["hot_params"], rand
        )
        self.faults: FaultIndex = build_faults(mine(doc.faults), carries["faults"], rand)
        self.fallbacks: FallbackIndex = build_fallbacks(
            mine(doc.fallbacks), carries["fallbacks"], rand
        )
        policy = getattr(doc.auth, direction)
        self.auth: AuthLeaf | None = None
        if policy is not None:
            key: Hashable = (direction, policy)
            self.auth = carries["auth"].take(key, partial(AuthLeaf, policy, direction, rand))


class GovernanceState:
    """Rules in force plus their live state; immutable once built except for the leaves."""

    options: Options
    leaves: dict[str, dict[tuple[Hashable, int], object]]

    def __init__(
        self,
        document: RulesDocument,
        previous: GovernanceState | None = None,
        options: Options | None = None,
    ) -> None:
        opts = options or (previous.options if previous is not None else Options())
        old = previous.leaves if previous is not None else {}
        carries = {kind: Carry(old.get(kind)) for kind in KINDS}
        self.document = document
        self.options = opts
        self.routes = RouteTable(
            document.routes,
            document.load_balancing,
            carries["routes"],
            carries["balancing"],
            carries["budgets"],
            local_zone=opts.local_zone,
            rand=opts.rand,
        )
        self.breakers: BreakerIndex = build_breakers(
            document.breakers, carries["breakers"], opts.rand, opts.max_keys
        )
        self.limits: dict[str, LimitsLeaf] = build_limits(
            document.resource_limits, carries["limits"], opts.rand
        )
        self.inbound = DirectionRules(document, "inbound", carries, opts)
        self.outbound = DirectionRules(document, "outbound", carries, opts)
        self.leaves = {kind: c.leaves for kind, c in carries.items()}

    def snapshot(self, now: float) -> dict[str, list[dict[str, Any]]]:
        """Every rule's decisions and state, by kind (JSON-ready)."""
        sides = (self.inbound, self.outbound)
        return {
            "routes": [leaf.describe() for leaf in self.routes.leaves()],
            "load_balancing": [lb.describe() for lb in self.routes.balancing.values()],
            "breakers": [row for leaf in self.breakers.leaves() for row in leaf.describe(now)],
            "rate_limits": [
                row for d in sides for leaf in d.rate_limits.leaves for row in leaf.describe(now)
            ],
            "hot_params": [leaf.describe() for d in sides for leaf in d.hot_params.leaves()],
            "faults": [leaf.describe() for d in sides for leaf in d.faults.leaves()],
            "auth": [row for d in sides if d.auth is not None for row in d.auth.describe()],
            "fallbacks": [leaf.describe() for d in sides for leaf in d.fallbacks.leaves()],
            "resource_limits": [
                leaf.describe() for leaf in {id(v): v for v in self.limits.values()}.values()
            ],
        }

    def breaker_states(self, now: float) -> dict[str, list[dict[str, Any]]]:
        """Per service, each live breaker's state (for /clusters)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for leaf in self.breakers.leaves():
            for row in leaf.describe(now):
                out.setdefault(row["service"], []).append(row)
        return out

    def breaker_leaves(self) -> list[BreakerLeaf]:
        return self.breakers.leaves()
