"""The rule-kind registry: every section of the rules document belongs to one kind, once."""

from __future__ import annotations

import attrs

from sofamesh.governance.filters.state import GovernanceState
from sofamesh.governance.kind import DIRECTIONS
from sofamesh.governance.kinds import KINDS
from sofamesh.governance.rules import RulesDocument, parse_rules


def test_every_document_section_belongs_to_exactly_one_kind() -> None:
    sections = [s for kind in KINDS for s in kind.sections]
    document = [f.name for f in attrs.fields(RulesDocument) if f.name != "version"]
    assert sorted(sections) == sorted(document)


def test_kind_names_and_carried_state_do_not_collide() -> None:
    names = [kind.name for kind in KINDS]
    carries = [c for kind in KINDS for c in kind.carries]
    assert len(set(names)) == len(names) and len(set(carries)) == len(carries)
    slots = [(s.slot, d) for kind in KINDS for s in kind.filters for d in s.directions]
    assert len(set(slots)) == len(slots)  # no two filters share a place in a chain
    assert all(set(s.directions) <= set(DIRECTIONS) for k in KINDS for s in k.filters)


def test_state_holds_each_kind_under_its_name_and_snapshots_every_section() -> None:
    state = GovernanceState(
        parse_rules(
            {
                "rate_limits": [{"service": "a", "count": 1, "direction": "outbound"}],
                "breakers": [{"service": "a"}],
            }
        )
    )
    for kind in KINDS:
        assert len(state.of(kind)) == (2 if kind.per_direction else 1)
    assert state.outbound.rate_limits.leaves and not state.inbound.rate_limits.leaves
    rows = state.snapshot(0.0)
    assert list(rows) == [s for kind in KINDS for s in kind.sections]
    assert len(rows["rate_limits"]) == 1 and len(rows["breakers"]) == 1


def test_an_unchanged_rule_keeps_its_state_across_a_reload() -> None:
    first = GovernanceState(parse_rules({"breakers": [{"service": "a"}, {"service": "b"}]}))
    second = GovernanceState(
        parse_rules({"breakers": [{"service": "a"}, {"service": "b", "threshold": 0.9}]}), first
    )
    [(_, a1)] = first.breakers.lookup("a", "")
    [(_, a2)] = second.breakers.lookup("a", "")
    [(_, b1)] = first.breakers.lookup("b", "")
    [(_, b2)] = second.breakers.lookup("b", "")
    assert a1 is a2 and b1 is not b2
