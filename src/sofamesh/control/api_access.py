"""Routes for who may do what: login, workspaces, users, members, tokens, the audit log."""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from sofamesh.control.api import ApiError, Call, Reply, Route
from sofamesh.control.auth import LoginThrottle
from sofamesh.control.records import check_name, check_role

if TYPE_CHECKING:
    from sofamesh.control.app import ControlPlane

USER_ROLES = ("owner", "editor", "viewer")


class AccessApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.records = cp.records
        self.throttle = LoginThrottle()

    def routes(self) -> list[Route]:
        ws = "/api/v1/workspaces/{ws}"
        return [
            Route("POST", "/api/v1/login", "public", self.login, "Log in: a token", "Login"),
            Route("GET", "/api/v1/whoami", "user", self.whoami, "The caller and its roles"),
            Route("GET", "/api/v1/workspaces", "user", self.list_workspaces, "Workspaces"),
            Route(
                "POST", "/api/v1/workspaces", "admin", self.create_workspace, "Create", "Workspace"
            ),
            Route("GET", ws, "viewer", self.get_workspace, "One workspace"),
            Route("GET", "/api/v1/users", "admin", self.list_users, "Users"),
            Route("POST", "/api/v1/users", "admin", self.create_user, "Create a user", "User"),
            Route("GET", f"{ws}/members", "viewer", self.members, "Members and their roles"),
            Route("POST", f"{ws}/members", "owner", self.set_member, "Set a role", "Member"),
            Route("GET", f"{ws}/tokens", "owner", self.tokens, "Tokens (never their secret)"),
            Route("POST", f"{ws}/tokens", "owner", self.create_token, "Create a token", "Token"),
            Route("DELETE", f"{ws}/tokens/{{id}}", "owner", self.revoke_token, "Revoke a token"),
            Route("GET", f"{ws}/audit", "owner", self.ws_audit, "The workspace's audit log"),
            Route("GET", "/api/v1/audit", "admin", self.audit, "The whole audit log"),
        ]

    async def login(self, call: Call) -> Any:
        body = call.json()
        name, password = body.get("user"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise ApiError(400, 'send {"user": NAME, "password": PASSWORD}')
        keys = [f"user:{name}", f"peer:{call.peer.rpartition(':')[0]}"]
        now = time.monotonic()
        wait = self.throttle.wait(keys, now)
        if wait > 0:
            raise ApiError(
                429,
                "too many failed logins; wait",
                headers={"retry-after": self.throttle.retry_after(wait)},
            )
        user = await self.records.login(name, password)
        if user is None:
            self.throttle.failed(keys, time.monotonic())
            raise ApiError(401, "wrong user or password")
        self.throttle.succeeded(keys)
        token, record = await self.records.issue_token(
            user=name, name="login", ttl=self.cp.config.token_ttl
        )
        return {"token": token, "user": name, "admin": user["admin"], "expires": record["expires"]}

    async def whoami(self, call: Call) -> Any:
        p = call.principal
        assert p is not None
        return {"user": p.name, "admin": p.admin, "roles": p.roles, "token_id": p.token_id}

    async def list_workspaces(self, call: Call) -> Any:
        p = call.principal
        assert p is not None
        spaces = await self.records.workspaces()
        return [w for w in spaces if p.admin or w["name"] in p.roles]

    async def create_workspace(self, call: Call) -> Any:
        name = check_name("workspace", call.json().get("name"))
        record = await self.records.create_workspace(name, call.actor)
        await self.records.audit(call.actor, name, "workspace.create", name)
        return Reply(201, record)

    async def get_workspace(self, call: Call) -> Any:
        return await self.records.workspace(call.workspace)

    async def list_users(self, call: Call) -> Any:
        return await self.records.users()

    async def create_user(self, call: Call) -> Any:
        body = call.json()
        name = check_name("user", body.get("name"))
        role, workspace = body.get("role"), body.get("workspace")
        admin = role == "admin"
        if not admin and role is not None:
            if role not in USER_ROLES:
                raise ValueError(f"role must be admin or one of {list(USER_ROLES)}, got {role!r}")
            if workspace is None or await self.records.workspace(str(workspace)) is None:
                raise ApiError(404, f"a {role} needs an existing workspace, got {workspace!r}")
        password = body.get("password") or secrets.token_urlsafe(12)
        if not isinstance(password, str) or len(password) < 8:
            raise ValueError("password must be a string of at least 8 characters")
        await self.records.create_user(name, password, admin=admin)
        if role and not admin:
            await self.records.set_member(str(workspace), name, str(role))
            self.cp.dispatcher.forget()
        await self.records.audit(call.actor, workspace, "user.create", name, role=role)
        out = {"name": name, "admin": admin, "role": role, "workspace": workspace}
        if not body.get("password"):
            out["password"] = password  # generated: shown this once
        return Reply(201, out)

    async def members(self, call: Call) -> Any:
        return await self.records.members(call.workspace)

    async def set_member(self, call: Call) -> Any:
        body = call.json()
        user, role = body.get("user"), body.get("role")
        if role not in USER_ROLES:
            raise ValueError(f"role must be one of {list(USER_ROLES)}, got {role!r}")
        if not isinstance(user, str) or await self.records.user(user) is None:
            raise ApiError(404, f"no user {user!r}")
        await self.records.set_member(call.workspace, user, role)
        self.cp.dispatcher.forget()  # the user's roles changed
        await self.records.audit(call.actor, call.workspace, "member.set", user, role=role)
        return {"user": user, "role": role}

    async def tokens(self, call: Call) -> Any:
        return await self.records.tokens(call.workspace)

    async def create_token(self, call: Call) -> Any:
        body = call.json()
        role = check_role(body.get("role", "dataplane"))
        name = str(body.get("name", ""))
        apps = _apps(body.get("apps", []), role)
        token, record = await self.records.issue_token(
            user=call.actor, workspace=call.workspace, role=role, name=name, apps=apps
        )
        await self.records.audit(
            call.actor, call.workspace, "token.create", record["id"], role=role, name=name
        )
        return Reply(201, {**record, "token": token})

    async def revoke_token(self, call: Call) -> Any:
        token_id = call.params["id"]
        if not await self.records.revoke_token(call.workspace, token_id):
            raise ApiError(404, f"no token {token_id!r} in this workspace")
        self.cp.dispatcher.forget()
        await self.records.audit(call.actor, call.workspace, "token.revoke", token_id)
        return {"revoked": token_id}

    async def ws_audit(self, call: Call) -> Any:
        return await self.records.audit_log(call.workspace, int(call.query.get("limit", 200)))

    async def audit(self, call: Call) -> Any:
        return await self.records.audit_log(None, int(call.query.get("limit", 200)))


def _apps(value: Any, role: str) -> tuple[str, ...]:
    """The apps a data-plane token is limited to (the identities the CA may give it)."""
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ApiError(400, "apps: expected a list of app names")
    if value and role != "dataplane":
        raise ApiError(400, "apps: only a dataplane token is limited to apps")
    for app in value:
        if not _APP.fullmatch(app):
            raise ApiError(400, f"apps: {app!r} is not an app name (letters, digits, . - _)")
    return tuple(value)


_APP = re.compile(r"[A-Za-z0-9._-]{1,63}")
