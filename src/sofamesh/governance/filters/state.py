"""One generation of rules with their live state: what every governance filter reads.

A `GovernanceState` is built from a `RulesDocument` and the previous
generation, one kind of rule at a time (`kinds.KINDS`): each kind's state goes
under its name (``state.breakers``), or for a kind built per direction under
each side (``state.outbound.rate_limits``). The indices (which rules apply to
which call) are rebuilt each time -- cheap, and never shared across
generations -- while the stateful leaves (breakers, limiters, counters, hash
tables) are carried over for every rule whose value did not change
(`keyed.Carry`). A holder swaps the whole state in with one assignment; each
filter reads `holder.current` once per call, so a call never sees half of one
generation and half of another inside a filter, and a permit is always
returned to the leaf that gave it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from sofamesh.governance.filters.degrade import Fallback
from sofamesh.governance.filters.keyed import Carry, Leaves
from sofamesh.governance.kind import DIRECTIONS, Build, Options, RuleKind
from sofamesh.governance.kinds import KINDS
from sofamesh.governance.rules import RulesDocument

__all__ = ["DirectionRules", "GovernanceState", "Holder", "Options"]


class Holder(Protocol):
    """What filters read: the state in force, and the fallbacks registered in code."""

    current: GovernanceState
    code_fallbacks: dict[tuple[str, str, str], Fallback]


class DirectionRules:
    """The state of the kinds built per direction, for one side (inbound: provider side)."""

    def __init__(self, direction: str) -> None:
        self.direction = direction

    if TYPE_CHECKING:  # each kind's state, set by name (see `RuleKind.name`)

        def __getattr__(self, name: str) -> Any: ...


class GovernanceState:
    """Rules in force plus their live state; immutable once built except for the leaves."""

    options: Options
    leaves: dict[str, Leaves]

    def __init__(
        self,
        document: RulesDocument,
        previous: GovernanceState | None = None,
        options: Options | None = None,
    ) -> None:
        opts = options or (previous.options if previous is not None else Options())
        old = previous.leaves if previous is not None else {}
        carries = {name: Carry(old.get(name)) for kind in KINDS for name in kind.carries}
        self.document = document
        self.options = opts
        self.inbound, self.outbound = (DirectionRules(d) for d in DIRECTIONS)
        for kind in KINDS:
            if kind.per_direction:
                for side in self.sides():
                    built = kind.build(Build(document, carries, opts, side.direction))
                    setattr(side, kind.name, built)
            else:
                setattr(self, kind.name, kind.build(Build(document, carries, opts)))
        self.leaves = {name: c.leaves for name, c in carries.items()}

    if TYPE_CHECKING:  # each kind's state, set by name (see `RuleKind.name`)

        def __getattr__(self, name: str) -> Any: ...

    def sides(self) -> tuple[DirectionRules, DirectionRules]:
        return self.inbound, self.outbound

    def of(self, kind: RuleKind) -> tuple[Any, ...]:
        """A kind's state: one value, or one per side (inbound, outbound)."""
        if kind.per_direction:
            return tuple(getattr(side, kind.name) for side in self.sides())
        return (getattr(self, kind.name),)

    def snapshot(self, now: float) -> dict[str, list[dict[str, Any]]]:
        """Every rule's decisions and state, by section (JSON-ready)."""
        rows: dict[str, list[dict[str, Any]]] = {}
        for kind in KINDS:
            rows.update(kind.snapshot(self.of(kind), now))
        return rows

    def breaker_states(self, now: float) -> dict[str, list[dict[str, Any]]]:
        """Per service, each live breaker's state (for /clusters)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for leaf in self.breakers.leaves():
            for row in leaf.describe(now):
                out.setdefault(row["service"], []).append(row)
        return out
