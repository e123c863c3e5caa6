"""Service authentication: allow/deny lists per service and method."""

from __future__ import annotations

import pytest

from sofamesh.governance.auth import (
    Action,
    AuthConfig,
    Authorizer,
    AuthRule,
    Principal,
    Reason,
    Subject,
)
from sofamesh.governance.shadow import EnforcementConfig, Verdict


def authz(*rules: AuthRule, default: Action = Action.ALLOW, **kw: object) -> Authorizer:
    return Authorizer(AuthConfig(rules=rules, default=default, **kw))  # type: ignore[arg-type]


def allowed(a: Authorizer, app: str, service: str = "s", method: str = "m") -> bool:
    return a.check(Subject(app=app), service, method).admitted


def test_no_rule_uses_config_default() -> None:
    assert allowed(authz(), "x")
    d = authz(default=Action.DENY).check(Subject(app="x"), "s", "m")
    assert (d.verdict, d.reason) == (Verdict.REJECT, Reason.NO_RULE)


def test_allow_list_is_a_white_list_by_default() -> None:
    a = authz(AuthRule(service="s", allow=["orders"]))
    assert allowed(a, "orders")
    assert not allowed(a, "billing")


def test_deny_list_alone_is_a_black_list() -> None:
    a = authz(AuthRule(service="s", deny=["evil"]))
    assert not allowed(a, "evil")
    assert allowed(a, "orders")


def test_deny_wins_over_allow() -> None:
    a = authz(AuthRule(service="s", allow=["x"], deny=["x"]))
    d = a.check(Subject(app="x"), "s", "m")
    assert (d.verdict, d.reason) == (Verdict.REJECT, Reason.DENY_LIST)


def test_service_deny_applies_even_if_method_allows() -> None:
    a = authz(
        AuthRule(service="s", deny=["x"]),
        AuthRule(service="s", method="m", allow=["x"]),
    )
    assert not allowed(a, "x", method="m")


def test_method_rule_is_more_specific_for_allow() -> None:
    a = authz(
        AuthRule(service="s", allow=["a", "b"]),
        AuthRule(service="s", method="admin", allow=["a"]),
    )
    assert allowed(a, "b", method="read")
    assert not allowed(a, "b", method="admin")
    assert allowed(a, "a", method="admin")


def test_explicit_default_overrides_white_list_default() -> None:
    a = authz(AuthRule(service="s", allow=["a"], default=Action.ALLOW))
    d = a.check(Subject(app="z"), "s", "m")
    assert (d.verdict, d.reason) == (Verdict.ADMIT, Reason.RULE_DEFAULT)


def test_anonymous_subject_matches_no_list() -> None:
    a = authz(AuthRule(service="s", deny=["x"]))
    assert allowed(a, "")
    b = authz(AuthRule(service="s", allow=["x"]))
    assert not allowed(b, "")


def test_tls_identity_slots_in_as_a_principal() -> None:
    spiffe = "spiffe://mesh/ns/prod/sa/orders"
    a = authz(AuthRule(service="s", allow=[spiffe]))
    assert not a.check(Subject(app="orders"), "s", "m").admitted
    assert a.check(Subject(app="orders", tls_identity=spiffe), "s", "m").admitted


def test_principal_parsing() -> None:
    assert Principal.parse("orders") == Principal("app", "orders")
    assert Principal.parse("app:orders") == Principal("app", "orders")
    assert Principal.parse("tls:abc") == Principal("tls", "abc")
    assert Principal.parse("spiffe://x/y").kind == "tls"
    assert str(Principal("app", "a")) == "app:a"


def test_shadow_mode_denies_nothing_but_counts() -> None:
    a = authz(AuthRule(service="s", allow=["a"]), enforcement=EnforcementConfig(shadow=True))
    d = a.check(Subject(app="z"), "s", "m")
    assert d.admitted and d.verdict is Verdict.SHADOW
    s = a.statistics()
    assert (s.denied, s.enforcement.shadowed, s.enforcement.rejected) == (1, 1, 0)


def test_duplicate_rules_rejected() -> None:
    with pytest.raises(ValueError):
        AuthConfig(rules=(AuthRule(service="s"), AuthRule(service="s")))


def test_bad_principal_kind_rejected() -> None:
    with pytest.raises(ValueError):
        Principal("dns", "x")
