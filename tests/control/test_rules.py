"""Rules versions: apply validated with the data plane's parser, history, diff, rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.control.harness import running_control

from sofamesh.control.rules import in_shadow, parse_version
from sofamesh.governance.rules import parse_rules

pytestmark = pytest.mark.anyio

LIMIT = {"rate_limits": [{"service": "orders", "count": 10, "name": "orders-qps"}]}
BREAKER = {"breakers": [{"service": "stock", "threshold": 0.3}]}


def test_versions_parse_with_or_without_v() -> None:
    assert parse_version("v7") == parse_version(7) == 7
    with pytest.raises(ValueError):
        parse_version("latest")


def test_shadow_puts_every_enforcing_rule_in_shadow() -> None:
    doc = parse_rules(in_shadow({**LIMIT, **BREAKER}))
    assert doc.rate_limits[0].enforcement.shadow and doc.breakers[0].enforcement.shadow
    auth = {"auth": {"inbound": {"default": "deny", "rules": [{"service": "orders"}]}}}
    policy = parse_rules(in_shadow(auth)).auth.inbound
    assert policy is not None and policy.enforcement.shadow


async def test_apply_history_diff_rollback(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch) as (_cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        editor = admin.as_(await admin.token_for("a", "editor"))
        base = "/api/v1/workspaces/a/rules"
        v1 = await editor.ok("POST", base, {"document": LIMIT, "message": "limit orders"})
        assert v1["version"] == "v1" and v1["author"] == "admin"  # the token's creator
        yaml_doc = "rate_limits:\n  - {service: orders, count: 20, name: orders-qps}\n"
        v2 = await editor.ok("POST", base, {"document": yaml_doc, "message": "raise"})
        assert v2["version"] == "v2" and v2["document"]["rate_limits"][0]["count"] == 20
        history = await editor.ok("GET", f"{base}/history")
        assert [(h["version"], h["message"]) for h in history] == [
            ("v1", "limit orders"),
            ("v2", "raise"),
        ]
        diff = (await editor.ok("GET", f"{base}/diff?from=v1&to=2"))["diff"]
        assert "-- count: 10" in diff and "+- count: 20" in diff
        v3 = await editor.ok("POST", f"{base}/rollback", {"version": "v1"})
        assert v3["version"] == "v3" and v3["document"] == v1["document"]
        assert v3["rollback_of"] == "v1"
        assert (await editor.ok("GET", base))["version"] == "v3"
        assert (await editor.ok("GET", f"{base}/versions/v2"))["message"] == "raise"
        assert (await editor.call("POST", f"{base}/rollback", {"version": "v9"}))[0] == 404
        audit = await admin.ok("GET", "/api/v1/workspaces/a/audit")
        assert [e["action"] for e in audit if e["action"].startswith("rules")] == [
            "rules.apply",
            "rules.apply",
            "rules.rollback",
        ]


async def test_an_invalid_document_is_refused_whole(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch) as (_cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        base = "/api/v1/workspaces/a/rules"
        bad = {
            "rate_limits": [{"service": "orders", "count": -1}],
            "breakers": [{"service": "stock", "threshold": "high"}],
            "colour": "red",
        }
        status, data = await admin.call("POST", base, {"document": bad})
        assert status == 400 and "nothing stored" in data["error"]
        paths = [p.split(":")[0] for p in data["problems"]]
        assert (
            any(p.startswith("rate_limits[0]") for p in paths) and "breakers[0].threshold" in paths
        )
        assert "colour" in paths
        status, data = await admin.call("POST", base, {"document": "a: [unclosed"})
        assert status == 400 and "malformed YAML" in data["error"]
        assert await admin.ok("GET", f"{base}/history") == []
