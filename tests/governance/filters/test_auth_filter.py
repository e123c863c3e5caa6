"""AuthFilter: allow and deny lists of caller apps per service and method."""

from __future__ import annotations

from typing import Any

import pytest
from govhelp import Terminal, call, chain, governance

from sofamesh.governance.filters.auth import AuthFilter
from sofamesh.model import Status

pytestmark = pytest.mark.anyio


def guarded(policy: dict[str, Any], direction: str = "inbound") -> Any:
    g = governance({"auth": {direction: policy}})
    term = Terminal()
    return chain([AuthFilter(g, direction)], term), term, g


async def test_allow_list_admits_listed_callers_and_denies_others_naming_the_rule() -> None:
    handler, term, _ = guarded(
        {"rules": [{"name": "orders-callers", "service": "orders", "allow": ["web"]}]}
    )
    assert (await handler(call(caller="web"))).ok
    denied = await handler(call(caller="batch"))
    assert denied.status is Status.UNAUTHORIZED
    assert "orders-callers" in denied.detail and "'batch'" in denied.detail
    assert len(term.calls) == 1


async def test_deny_list_wins_over_a_method_allow() -> None:
    rules = [
        {"service": "orders", "deny": ["batch"]},
        {"service": "orders", "method": "/report", "allow": ["batch", "web"]},
    ]
    handler, _, _ = guarded({"rules": rules})
    assert (await handler(call(caller="batch", method="/report"))).status is Status.UNAUTHORIZED
    assert (await handler(call(caller="web", method="/report"))).ok
    assert (await handler(call(caller="mobile", method="/report"))).status is Status.UNAUTHORIZED
    assert (await handler(call(caller="mobile", method="/list"))).ok  # black list only: allow


async def test_default_deny_for_services_without_a_rule() -> None:
    handler, _, _ = guarded({"default": "deny", "rules": [{"service": "orders", "allow": ["web"]}]})
    assert (await handler(call(caller="web"))).ok
    assert (await handler(call(service="users", caller="web"))).status is Status.UNAUTHORIZED


async def test_anonymous_caller_gets_the_default() -> None:
    handler, _, _ = guarded({"rules": [{"service": "orders", "allow": ["web"]}]})
    denied = await handler(call(caller=""))
    assert denied.status is Status.UNAUTHORIZED and "anonymous" in denied.detail


async def test_shadow_mode_counts_denials_without_enforcing() -> None:
    handler, _, g = guarded(
        {
            "enforcement": {"shadow": True},
            "rules": [{"service": "orders", "allow": ["web"]}],
        }
    )
    assert (await handler(call(caller="batch"))).ok
    rows = {r["rule"]: r for r in g.snapshot()["rules"]["auth"]}
    assert rows["auth.inbound.rules[0]"]["denied"] == 1
    assert rows["auth.inbound"]["shadowed"] == 1 and rows["auth.inbound"]["rejected"] == 0


async def test_no_policy_for_the_direction_checks_nothing() -> None:
    handler, _, _ = guarded({"default": "deny"}, direction="inbound")
    g2 = governance({"auth": {"inbound": {"default": "deny"}}})
    outbound = chain([AuthFilter(g2, "outbound")], Terminal())
    assert (await outbound(call(caller="anyone"))).ok
    assert (await handler(call(caller="anyone"))).status is Status.UNAUTHORIZED
