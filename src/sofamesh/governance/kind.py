"""A kind of rule, declared once: its sections, state, filters, when it is in use, its /stats rows.

Each rule's filter module ends with its `RuleKind`; `kinds.KINDS` lists them.
The state holder (`filters/state.py`) builds every kind's state from a rules
document, carrying leaves across reloads by the names in `carries`, and
gathers their `snapshot` rows for /stats; the composer (`compose.py`) puts
every kind's filters in the chains by `slot`, and keeps only those whose
`in_use` says the rules in force use them.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import attrs

from sofamesh.chain import Filter
from sofamesh.clock import Clock
from sofamesh.governance.filters.keyed import Carry
from sofamesh.governance.options import Options as Options  # a kind's `Build` carries them

if TYPE_CHECKING:
    from sofamesh.governance.filters.state import Holder
    from sofamesh.governance.rules import RulesDocument

DIRECTIONS = ("inbound", "outbound")
Rows = list[dict[str, Any]]
Sleep = Callable[[float], Awaitable[None]]


@attrs.frozen
class Build:
    """What one kind's state is built from, for one generation of rules."""

    document: RulesDocument
    carries: Mapping[str, Carry]
    options: Options
    direction: str = ""  # set for a kind built per direction

    def mine(self, rules: tuple[Any, ...]) -> list[tuple[int, Any]]:
        """The rules of this direction, with their index in the document."""
        return [(i, r) for i, r in enumerate(rules) if r.direction == self.direction]


@attrs.frozen
class Compose:
    """What a filter factory may use."""

    governance: Holder
    clock: Clock
    direction: str
    sleep: Sleep = anyio.sleep
    rand: Callable[[], float] = random.random
    task_group: anyio.abc.TaskGroup | None = None


@attrs.frozen
class FilterSlot:
    """One filter of a kind: where it sits in which chains, and how it is made.

    `slot` orders the governance filters of a chain, lowest outermost (between
    `StatsFilter` and `TimeoutFilter` outbound, after `InboundDeadlineFilter`
    inbound). `make` may return None when the filter cannot run here (mirroring
    without a task group). `in_use`, when given, replaces the kind's own.
    """

    slot: int
    directions: tuple[str, ...]
    make: Callable[[Compose], Filter | None]
    in_use: Callable[[RulesDocument, Holder], bool] | None = None


@attrs.frozen
class RuleKind:
    """Everything the holder and the composer need to know about one kind of rule.

    `name` is where its state lives: ``state.<name>``, or for a kind built per
    direction ``state.inbound.<name>`` and ``state.outbound.<name>``. `build`
    makes that state from a `Build`; `snapshot` turns the states (one, or
    inbound then outbound) into /stats rows by section.
    """

    name: str
    sections: tuple[str, ...]
    carries: tuple[str, ...]
    build: Callable[[Build], object]
    snapshot: Callable[[tuple[Any, ...], float], dict[str, Rows]]
    in_use: Callable[[RulesDocument, Holder], bool]
    filters: tuple[FilterSlot, ...] = ()
    per_direction: bool = False
