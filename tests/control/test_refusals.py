"""A data plane's own policy on pushed rules: kinds it refuses, a size cap; it fails closed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from tests.control.harness import eventually, running_control

from sofamesh.config import ConfigError, load_config
from sofamesh.config.control_urls import ControlUrls
from sofamesh.control.agent import refusal
from sofamesh.governance.rules import RulesDocument
from sofamesh.sdk import open_mesh

LIMIT = {"rate_limits": [{"service": "orders-svc", "count": 1000, "name": "orders-qps"}]}
FAULT = {"faults": [{"service": "orders-svc", "abort": {"percentage": 100}}]}
CAP = 2000


def test_the_config_names_every_kind_of_the_rules_document() -> None:
    policy = ControlUrls.parse({"urls": "http://a:1", "refuse_kinds": ["faults", "faults"]})
    assert policy.refuse_kinds == ("faults",) and policy.addresses == (("a", 1),)
    kinds = {f.name for f in attrs.fields(RulesDocument)} - {"version"}
    assert ControlUrls.parse({"urls": "http://a:1", "refuse_kinds": sorted(kinds)})
    assert ControlUrls.parse("http://a:1").max_document_bytes == 4 * 1024 * 1024


def test_unknown_kinds_and_bad_caps_are_config_errors_with_their_paths() -> None:
    bad = {"urls": "http://a:1", "refuse_kinds": ["routes", "fault"], "max_document_bytes": 0}
    with pytest.raises(ConfigError) as e:
        load_config({"app": "x", "control": bad, "workspace": "w", "control_token": "t"}, env={})
    problems = e.value.problems
    assert any(p.startswith("control.refuse_kinds[1]:") and "'fault'" in p for p in problems)
    assert any(p.startswith("control.max_document_bytes:") for p in problems)
    with pytest.raises(ConfigError) as e:
        load_config({"app": "x", "control": {"refuse_kinds": []}, "workspace": "w"}, env={})
    assert "control.urls: required" in e.value.problems


def test_refusal_names_the_kind_or_the_size() -> None:
    policy = ControlUrls.parse({"urls": "http://a:1", "refuse_kinds": ["faults", "auth"]})
    assert refusal(policy, LIMIT) is None
    assert refusal(policy, {**LIMIT, "faults": [], "auth": {}}) is None  # empty sections
    error = refusal(policy, {**LIMIT, **FAULT})
    assert error is not None and "faults" in error and "control.refuse_kinds" in error
    size = len(json.dumps(LIMIT, separators=(",", ":")))
    assert refusal(attrs.evolve(policy, max_document_bytes=size), LIMIT) is None
    error = refusal(attrs.evolve(policy, max_document_bytes=size - 1), LIMIT)
    assert error is not None and "control.max_document_bytes" in error


async def _row(admin: Any) -> dict[str, Any]:
    rows = await admin.ok("GET", "/api/v1/workspaces/a/sidecars")
    return dict(rows[0]) if rows else {}


@pytest.mark.anyio
async def test_a_data_plane_refuses_by_its_policy_and_keeps_its_rules(
    tmp_path: Path, monkeypatch: Any, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    async with running_control(tmp_path, monkeypatch, report_interval=0.2) as (cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        control = {"urls": f"http://{cp.bound}", "refuse_kinds": ["faults"]}
        config = {
            "app": "shop",
            "registry": f"file://{tmp_path}/reg?poll=0.05",
            "control": {**control, "max_document_bytes": CAP},
            "control_token": await admin.token_for("a", "dataplane"),
            "workspace": "a",
        }
        rules = "/api/v1/workspaces/a/rules"
        async with open_mesh(config) as mesh:
            await admin.ok("POST", rules, {"document": LIMIT})

            async def state(sync: str, version: str) -> dict[str, Any] | None:
                row = await _row(admin)
                ok = row.get("sync") == sync and row.get("latest_rules_version") == version
                return row if ok else None

            await eventually(lambda: state("SYNCED", "v1"), what="v1 taken")
            await admin.ok("POST", rules, {"document": {**LIMIT, **FAULT}})
            row = await eventually(lambda: state("REJECTED", "v2"), what="v2 refused")
            assert "faults" in row["sync_error"] and row["rules_version"] == "v1"
            assert mesh.governance.version == "v1"  # fails closed: the last good rules stay
            assert not mesh.governance.current.document.faults
            warned = [r for r in caplog.records if r.levelname == "WARNING"]
            assert any("rules v2 refused by this data plane" in r.getMessage() for r in warned)

            many = [{**LIMIT["rate_limits"][0], "name": f"qps-{i}"} for i in range(40)]
            await admin.ok("POST", rules, {"document": {"rate_limits": many}})
            row = await eventually(lambda: state("REJECTED", "v3"), what="v3 refused")
            assert "control.max_document_bytes" in row["sync_error"]
            assert mesh.governance.version == "v1"

            await admin.ok("POST", rules, {"document": {}})
            await eventually(lambda: state("SYNCED", "v4"), what="v4 taken")
            await admin.ok("POST", rules, {"document": LIMIT})
            await eventually(lambda: state("SYNCED", "v5"), what="v5 taken")

        # Saved by a data plane whose policy since came to refuse it: not put back in force.
        saved = json.loads((tmp_path / "state" / "a-shop.rules.json").read_text())
        assert saved["version"] == "v5" and saved["document"]["rate_limits"]
        stricter = {**config, "control": {**control, "refuse_kinds": ["rate_limits"]}}
        cp.stop()
        async with open_mesh(stricter) as mesh:
            assert mesh.governance.version != "v5" and not mesh.governance.origin.startswith(
                "control"
            )
