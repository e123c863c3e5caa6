"""Flow rules keyed by service, method and caller app (Sentinel's limitApp)."""

from __future__ import annotations

import pytest

from sofamesh.governance.flowrules import FlowRule, FlowRules
from sofamesh.governance.ratelimit import Behavior, FlowConfig, Grade
from sofamesh.governance.shadow import Verdict

T0 = 1000.0


def qps(n: float) -> FlowConfig:
    return FlowConfig(count=n)


def admits(rules: FlowRules, service: str, method: str, caller: str, n: int) -> int:
    return sum(rules.try_acquire(service, method, caller, T0).admitted for _ in range(n))


def test_no_rule_admits_without_state() -> None:
    rules = FlowRules([FlowRule(service="a", limit=qps(1))])
    permit = rules.try_acquire("b", "m", "app", T0)
    assert permit.verdict is Verdict.SKIP and permit.admitted


def test_service_rule_shared_by_all_methods() -> None:
    rules = FlowRules([FlowRule(service="s", limit=qps(3))])
    assert admits(rules, "s", "m1", "x", 2) == 2
    assert admits(rules, "s", "m2", "x", 2) == 1


def test_each_method_rule_gives_every_method_its_own_limit() -> None:
    rules = FlowRules([FlowRule(service="s", method="*", limit=qps(2))])
    assert admits(rules, "s", "m1", "x", 5) == 2
    assert admits(rules, "s", "m2", "x", 5) == 2


def test_method_rule_and_service_rule_both_apply() -> None:
    rules = FlowRules(
        [FlowRule(service="s", limit=qps(10)), FlowRule(service="s", method="hot", limit=qps(2))]
    )
    assert admits(rules, "s", "hot", "x", 5) == 2
    assert admits(rules, "s", "cold", "x", 20) == 8  # the service-wide 10 minus hot's 2


def test_rejected_call_is_counted_by_no_limiter() -> None:
    rules = FlowRules(
        [FlowRule(service="s", limit=qps(10)), FlowRule(service="s", method="hot", limit=qps(1))]
    )
    admits(rules, "s", "hot", "x", 50)  # 1 admitted, 49 rejected by the method rule
    assert admits(rules, "s", "other", "x", 20) == 9


def test_named_caller_rule_limits_only_that_caller() -> None:
    rules = FlowRules([FlowRule(service="s", caller="billing", limit=qps(1))])
    assert admits(rules, "s", "m", "billing", 3) == 1
    assert admits(rules, "s", "m", "orders", 3) == 3


def test_default_caller_rule_counts_everyone_together() -> None:
    rules = FlowRules(
        [
            FlowRule(service="s", caller="default", limit=qps(3)),
            FlowRule(service="s", caller="billing", limit=qps(5)),
        ]
    )
    assert admits(rules, "s", "m", "billing", 2) == 2
    assert admits(rules, "s", "m", "orders", 5) == 1  # billing used 2 of the shared 3


def test_other_callers_rule_limits_each_unnamed_caller_separately() -> None:
    rules = FlowRules(
        [
            FlowRule(service="s", caller="billing", limit=qps(10)),
            FlowRule(service="s", caller="other", limit=qps(2)),
        ]
    )
    assert admits(rules, "s", "m", "a", 5) == 2
    assert admits(rules, "s", "m", "b", 5) == 2
    assert admits(rules, "s", "m", "billing", 5) == 5  # named: not an "other" caller
    assert admits(rules, "s", "m", "", 5) == 5  # no caller: not an "other" caller either


def test_other_callers_cache_is_bounded() -> None:
    rules = FlowRules([FlowRule(service="s", caller="other", limit=qps(1))], max_callers=2)
    for caller in ("a", "b", "c"):
        assert admits(rules, "s", "m", caller, 1) == 1
    assert admits(rules, "s", "m", "a", 1) == 1  # "a" was evicted: it starts afresh


def test_concurrency_rule_released_via_permit() -> None:
    cfg = FlowConfig(count=1, grade=Grade.CONCURRENCY)
    rules = FlowRules([FlowRule(service="s", limit=cfg)])
    permit = rules.try_acquire("s", "m", "x", T0)
    assert not rules.try_acquire("s", "m", "x", T0).admitted
    rules.release(permit)
    assert rules.try_acquire("s", "m", "x", T0).admitted


def test_paced_delays_add_up() -> None:
    paced = FlowConfig(count=10, behavior=Behavior.PACING, max_queueing_time=1.0)
    rules = FlowRules(
        [FlowRule(service="s", limit=paced), FlowRule(service="s", method="m", limit=paced)]
    )
    rules.try_acquire("s", "m", "x", T0)
    assert rules.try_acquire("s", "m", "x", T0).delay == pytest.approx(0.2)


def test_duplicate_resource_and_caller_rules_are_all_checked() -> None:
    rules = FlowRules([FlowRule(service="s", limit=qps(5)), FlowRule(service="s", limit=qps(2))])
    assert admits(rules, "s", "m", "x", 5) == 2


def test_statistics_list_every_live_limiter() -> None:
    rules = FlowRules(
        [
            FlowRule(service="s", limit=qps(5)),
            FlowRule(service="s", method="*", caller="other", limit=qps(1)),
            FlowRule(service="s", method="*", caller="vip", limit=qps(9)),
        ]
    )
    admits(rules, "s", "m", "a", 2)
    stats = {(m, c): st.passed for _, m, c, st in rules.statistics(T0)}
    assert stats == {("", "default"): 1, ("m", "vip"): 0, ("m", "a"): 1}
