"""Rule scoping by service and method."""

from __future__ import annotations

import pytest

from sofamesh.governance.scope import ScopedRules


def build(name: str) -> list[str]:
    return [name]  # a fresh object per instance, so identity shows sharing


def test_service_wide_then_method() -> None:
    rules = ScopedRules([("s", "", "svc"), ("s", "m", "meth")], build)
    assert rules.lookup("s", "m") == (["svc"], ["meth"])
    assert rules.lookup("s", "other") == (["svc"],)
    assert rules.lookup("t", "m") == ()


def test_service_instance_is_shared_by_methods() -> None:
    rules = ScopedRules([("s", "", "svc")], build)
    assert rules.lookup("s", "a")[0] is rules.lookup("s", "b")[0]


def test_each_method_gets_its_own_instance_and_explicit_rule_wins() -> None:
    rules = ScopedRules([("s", "*", "each"), ("s", "special", "own")], build)
    a, b = rules.lookup("s", "a")[0], rules.lookup("s", "b")[0]
    assert a == b == ["each"] and a is not b
    assert rules.lookup("s", "a")[0] is a
    assert rules.lookup("s", "special") == (["own"],)


def test_per_method_instances_are_bounded() -> None:
    rules = ScopedRules([("s", "*", "each")], build, maxsize=2)
    first = rules.lookup("s", "a")[0]
    rules.lookup("s", "b")
    rules.lookup("s", "c")
    assert rules.lookup("s", "a")[0] is not first  # evicted: fresh state
    assert sum(1 for _ in rules.instances()) == 2


def test_instances_lists_every_live_instance() -> None:
    rules = ScopedRules([("s", "", "svc"), ("s", "m", "meth"), ("t", "*", "each")], build)
    rules.lookup("t", "x")
    assert sorted((s, m) for s, m, _ in rules.instances()) == [("s", ""), ("s", "m"), ("t", "x")]


@pytest.mark.parametrize("method", ["", "*", "m"])
def test_duplicate_rule_rejected(method: str) -> None:
    with pytest.raises(ValueError):
        ScopedRules([("s", method, "a"), ("s", method, "b")], build)
