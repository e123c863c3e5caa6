"""Users, workspaces, roles and tokens; every route refuses cross-workspace and small roles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.control.harness import running_control

from sofamesh.control.api import Route
from sofamesh.control.auth import LoginThrottle, hash_password, verify_password

pytestmark = pytest.mark.anyio

_ROLE_ORDER = {"viewer": 1, "editor": 2, "owner": 3}


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    a, b = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("s3cret-pass", a) and not verify_password("wrong", a)
    assert not verify_password("s3cret-pass", "garbage")


def test_login_throttle_doubles_the_wait_after_free_failures() -> None:
    t = LoginThrottle(free=3, base=1.0, max_delay=8.0)
    keys = ["user:bob"]
    for _ in range(3):
        assert t.wait(keys, 0.0) == 0.0
        t.failed(keys, 0.0)
    assert t.wait(keys, 0.0) == 0.0  # three free failures cost nothing
    t.failed(keys, 0.0)
    assert t.wait(keys, 0.0) == 1.0
    t.failed(keys, 1.0)
    assert t.wait(keys, 1.0) == 2.0
    for _ in range(5):
        t.failed(keys, 10.0)
    assert t.wait(keys, 10.0) == 8.0  # capped
    t.succeeded(keys)
    assert t.wait(keys, 10.0) == 0.0


async def test_admin_creates_workspaces_users_and_tokens(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch) as (_cp, admin):
        assert (await admin.call("POST", "/api/v1/workspaces", {"name": "a"}))[0] == 201
        assert (await admin.call("POST", "/api/v1/workspaces", {"name": "a"}))[0] == 409
        status, data = await admin.call("POST", "/api/v1/workspaces", {"name": "Bad Name"})
        assert status == 400 and "workspace name" in data["error"]
        created = await admin.ok(
            "POST", "/api/v1/users", {"name": "bob", "role": "editor", "workspace": "a"}
        )
        assert len(created["password"]) >= 12  # generated, shown once
        anon = admin.as_(None)
        login = await anon.ok(
            "POST", "/api/v1/login", {"user": "bob", "password": created["password"]}
        )
        bob = admin.as_(login["token"])
        me = await bob.ok("GET", "/api/v1/whoami")
        assert me == {
            "user": "bob",
            "admin": False,
            "roles": {"a": "editor"},
            "token_id": me["token_id"],
        }
        assert [w["name"] for w in await bob.ok("GET", "/api/v1/workspaces")] == ["a"]
        token = await admin.token_for("a", "viewer")
        tokens = await admin.ok("GET", "/api/v1/workspaces/a/tokens")
        assert all("token" not in t for t in tokens)  # the secret is never listed
        viewer = admin.as_(token)
        assert (await viewer.call("GET", "/api/v1/workspaces/a"))[0] == 200
        token_id = next(t["id"] for t in tokens if t["role"] == "viewer")
        await admin.ok("DELETE", f"/api/v1/workspaces/a/tokens/{token_id}")
        assert (await viewer.call("GET", "/api/v1/workspaces/a"))[0] == 401
        audit = await admin.ok("GET", "/api/v1/workspaces/a/audit")
        actions = [(e["actor"], e["action"]) for e in audit]
        assert ("admin", "workspace.create") in actions and ("admin", "token.revoke") in actions
        assert all(e["time"] > 0 for e in audit)


async def test_failed_logins_are_slowed_down(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch) as (_cp, admin):
        anon = admin.as_(None)
        statuses = [
            (await anon.call("POST", "/api/v1/login", {"user": "admin", "password": "nope"}))[0]
            for _ in range(5)
        ]
        assert statuses[:3] == [401, 401, 401] and 429 in statuses[3:]
        resp = await anon.client.post("/api/v1/login", json={"user": "admin", "password": "x"})
        assert resp.status_code == 429 and int(resp.headers["retry-after"]) >= 1


async def test_bad_input_is_refused_with_its_reason(tmp_path: Path, monkeypatch: Any) -> None:
    async with running_control(tmp_path, monkeypatch, max_body_bytes=1000) as (_cp, admin):
        headers = {"authorization": f"Bearer {admin.token}"}
        resp = await admin.client.post("/api/v1/workspaces", content=b"{nope", headers=headers)
        assert resp.status_code == 400 and "malformed JSON" in resp.json()["error"]
        resp = await admin.client.post("/api/v1/workspaces", content=b"x" * 5000, headers=headers)
        assert resp.status_code == 413
        assert (await admin.call("GET", "/api/v1/workspaces/nowhere"))[0] == 404
        assert (await admin.call("GET", "/api/v1/nothing-here"))[0] == 404
        assert (await admin.call("PUT", "/api/v1/workspaces"))[0] == 405


def _fill(route: Route) -> str:
    return route.path.replace("{ws}", "a").replace("{id}", "dp-1").replace("{version}", "1")


def _body(route: Route) -> dict[str, Any]:
    # Valid enough that only authorization can refuse it.
    return {
        "Workspace": {"name": "zz"},
        "User": {"name": "zed", "role": "viewer", "workspace": "a"},
        "Member": {"user": "bob", "role": "viewer"},
        "Token": {"role": "viewer"},
        "RulesApply": {"document": {}},
        "RulesRollback": {"version": "v1"},
        "Report": {"id": "dp-1", "app": "x"},
        "Ack": {"version": "v1"},
        "Action": {"action": "fail"},
    }.get(route.body or "", {})


def _may(need: str, who: str) -> bool:
    """Whether `who` (a token kind) may call a route that needs `need` in workspace a."""
    if need in ("public",):
        return True
    if who == "b-owner":
        return need == "user"
    if who == "a-dataplane":
        return need == "dataplane"
    if need in ("admin", "dataplane"):
        return False
    if need == "user":
        return True
    return _ROLE_ORDER[who.split("-")[1]] >= _ROLE_ORDER[need]


async def test_every_route_refuses_other_workspaces_and_small_roles(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with running_control(tmp_path, monkeypatch) as (cp, admin):
        for ws in ("a", "b"):
            await admin.ok("POST", "/api/v1/workspaces", {"name": ws})
        await admin.ok("POST", "/api/v1/users", {"name": "bob", "password": "bob-password"})
        tokens = {
            "a-viewer": await admin.token_for("a", "viewer"),
            "a-editor": await admin.token_for("a", "editor"),
            "a-owner": await admin.token_for("a", "owner"),
            "a-dataplane": await admin.token_for("a", "dataplane"),
            "b-owner": await admin.token_for("b", "owner"),
        }
        checked = 0
        for route in cp.routes:
            if route.need == "public":
                continue
            status, _ = await admin.as_(None).call(route.method, _fill(route), _body(route))
            assert status == 401, (route.path, status)
            for who, token in tokens.items():
                if _may(route.need, who):
                    continue
                status, data = await admin.as_(token).call(route.method, _fill(route), _body(route))
                want = {404, 403} if who == "b-owner" else {403}
                assert status in want, (route.method, route.path, who, status, data)
                assert set(data) == {"error"}, data  # no data, only the refusal
                checked += 1
        assert checked > 60
        # and nothing was changed by any refused call
        assert [w["name"] for w in await admin.ok("GET", "/api/v1/workspaces")] == ["a", "b"]
        assert (await admin.call("GET", "/api/v1/workspaces/a/rules"))[0] == 404
