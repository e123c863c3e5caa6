"""The control plane's records over a key-value `Store`, and the key layout.

| key | value |
|---|---|
| `users/NAME` | name, password hash, admin flag, created |
| `workspaces/NAME` | name, created, created_by |
| `members/WS/USER` | the user's role in the workspace |
| `tokens/SHA256` | id, workspace, role, user, name, created, expires, revoked |
| `audit/WS/TIME-RAND` | time, actor, workspace, action, target, detail (`_` for global) |
| `rules/WS/VERSION` | one rules version (see `rules.py`) |
| `dataplanes/WS/ID` | one data plane's last report and sync state (see `sessions.py`) |
| `desired/WS/ID` | what an operator asked of a data plane (health, drain) |
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import anyio.to_thread
import attrs

from sofamesh.control.auth import (
    ROLES,
    Principal,
    burn_time,
    hash_password,
    new_token,
    token_hash,
    verify_password,
)
from sofamesh.control.store import Store

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class Conflict(Exception):
    """The record already exists."""


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(
            f"{kind} name must be 1-63 of a-z 0-9 _ . - (starting with a letter or digit),"
            f" got {name!r}"
        )
    return name


def check_role(role: object) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
    return str(role)


def _verify(password: str, stored: str | None) -> bool:
    if stored is None:
        burn_time(password)  # as slow as a wrong password: the name's existence stays hidden
        return False
    return verify_password(password, stored)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@attrs.define
class Records:
    store: Store

    async def get_json(self, key: str) -> Any:
        raw = await self.store.get(key)
        return None if raw is None else json.loads(raw)

    async def list_json(self, prefix: str) -> list[Any]:
        return [json.loads(v) for _k, v in await self.store.list(prefix)]

    async def put_json(self, key: str, value: Any) -> None:
        await self.store.put(key, _dump(value))

    async def create_json(self, key: str, value: Any) -> bool:
        return await self.store.create(key, _dump(value))

    # -- users and workspaces -------------------------------------------------------------

    async def create_user(self, name: str, password: str, *, admin: bool = False) -> None:
        check_name("user", name)
        record = {
            "name": name,
            "password": await anyio.to_thread.run_sync(hash_password, password),
            "admin": admin,
            "created": time.time(),
        }
        if not await self.create_json(f"users/{name}", record):
            raise Conflict(f"user {name!r} already exists")

    async def user(self, name: str) -> dict[str, Any] | None:
        return await self.get_json(f"users/{name}") if NAME.match(name) else None

    async def users(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in u.items() if k != "password"} for u in await self.list_json("users/")
        ]

    async def login(self, name: str, password: str) -> dict[str, Any] | None:
        user = await self.user(name)
        stored = user["password"] if user else None
        ok = await anyio.to_thread.run_sync(_verify, password, stored)
        return user if ok else None

    async def create_workspace(self, name: str, by: str) -> dict[str, Any]:
        record = {"name": check_name("workspace", name), "created": time.time(), "created_by": by}
        if not await self.create_json(f"workspaces/{name}", record):
            raise Conflict(f"workspace {name!r} already exists")
        return record

    async def workspace(self, name: str) -> dict[str, Any] | None:
        return await self.get_json(f"workspaces/{name}") if NAME.match(name) else None

    async def workspaces(self) -> list[dict[str, Any]]:
        return list(await self.list_json("workspaces/"))

    async def set_member(self, workspace: str, user: str, role: str) -> None:
        await self.put_json(f"members/{workspace}/{user}", {"user": user, "role": check_role(role)})

    async def members(self, workspace: str) -> list[dict[str, Any]]:
        return list(await self.list_json(f"members/{workspace}/"))

    async def roles_of(self, user: str) -> dict[str, str]:
        roles = {}
        for key, raw in await self.store.list("members/"):
            ws, _, name = key[len("members/") :].partition("/")
            if name == user:
                roles[ws] = json.loads(raw)["role"]
        return roles

    # -- tokens ---------------------------------------------------------------------------

    async def issue_token(
        self,
        *,
        user: str,
        workspace: str | None = None,
        role: str | None = None,
        name: str = "",
        ttl: float | None = None,
        apps: tuple[str, ...] = (),
    ) -> tuple[str, dict[str, Any]]:
        """A new token (shown once) and its record; a login token has no workspace or role."""
        token = new_token()
        digest = token_hash(token)
        now = time.time()
        record = {
            "id": digest[:16],
            "user": user,
            "workspace": workspace,
            "role": role,
            "name": name,
            "created": now,
            "expires": None if ttl is None else now + ttl,
            "revoked": False,
            "apps": list(apps),
        }
        await self.put_json(f"tokens/{digest}", record)
        return token, record

    async def principal(self, token: str) -> Principal | None:
        """Who `token` stands for, or None if it is unknown, revoked or expired."""
        record = await self.get_json(f"tokens/{token_hash(token)}")
        if record is None or record["revoked"]:
            return None
        if record["expires"] is not None and record["expires"] < time.time():
            return None
        if record["workspace"] is not None:
            roles = {record["workspace"]: record["role"]}
            apps = tuple(record.get("apps") or ())
            return Principal(record["user"], False, roles, record["id"], apps)
        user = await self.user(record["user"])
        if user is None:
            return None
        roles = await self.roles_of(user["name"])
        return Principal(user["name"], bool(user["admin"]), roles, record["id"])

    async def tokens(self, workspace: str) -> list[dict[str, Any]]:
        return [t for t in await self.list_json("tokens/") if t["workspace"] == workspace]

    async def revoke_token(self, workspace: str, token_id: str) -> bool:
        for key, raw in await self.store.list("tokens/"):
            record = json.loads(raw)
            if record["id"] == token_id and record["workspace"] == workspace:
                record["revoked"] = True
                await self.put_json(key, record)
                return True
        return False

    # -- audit ----------------------------------------------------------------------------

    async def audit(
        self, actor: str, workspace: str | None, action: str, target: str = "", **detail: Any
    ) -> None:
        now = time.time()
        entry = {
            "time": now,
            "actor": actor,
            "workspace": workspace,
            "action": action,
            "target": target,
            "detail": detail,
        }
        key = f"audit/{workspace or '_'}/{time.time_ns():020d}-{secrets.token_hex(4)}"
        await self.put_json(key, entry)

    async def audit_log(self, workspace: str | None, limit: int = 200) -> list[dict[str, Any]]:
        prefix = f"audit/{workspace}/" if workspace else "audit/"
        entries = await self.list_json(prefix)
        entries.sort(key=lambda e: e["time"])
        return list(entries[-limit:])
