"""A control plane in-process for tests, and an API client logged in as admin."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from sofamesh.control.app import ControlPlane
from sofamesh.control.config import load_control_config

ADMIN_PASSWORD = "admin-password-for-tests"


class Api:
    """A JSON client of one control plane, with a token."""

    def __init__(self, client: httpx.AsyncClient, token: str | None = None) -> None:
        self.client = client
        self.token = token

    def as_(self, token: str | None) -> Api:
        return Api(self.client, token)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        resp = await self.client.request(method, path, json=body, headers=headers)
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = await self.call(method, path, body)
        assert status < 300, (method, path, status, data)
        return data

    async def token_for(self, workspace: str, role: str) -> str:
        data = await self.ok("POST", f"/api/v1/workspaces/{workspace}/tokens", {"role": role})
        return str(data["token"])


def control_config(tmp: Path, **more: Any) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0",
        "store": f"sqlite://{tmp}/control.db",
        "registry": f"file://{tmp}/reg?poll=0.05",
        **more,
    }


@asynccontextmanager
async def running_control(
    tmp: Path, monkeypatch: Any = None, *, cafile: str | None = None, **more: Any
) -> AsyncIterator[tuple[ControlPlane, Api]]:
    """A control plane on a free port and an admin client of it (over HTTPS, verified
    against `cafile`, when `more` has `tls`)."""
    if monkeypatch is not None:
        monkeypatch.setenv("SOFAMESH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    cp = ControlPlane(load_control_config(control_config(tmp, **more)))
    scheme = "https" if "tls" in more else "http"
    verify: Any = ssl.create_default_context(cafile=cafile) if cafile else True
    async with anyio.create_task_group() as tg:
        await tg.start(cp.run)
        base = f"{scheme}://{cp.bound}"
        async with httpx.AsyncClient(base_url=base, timeout=30, verify=verify) as client:
            api = Api(client)
            login = await api.ok(
                "POST", "/api/v1/login", {"user": "admin", "password": ADMIN_PASSWORD}
            )
            yield cp, api.as_(login["token"])
        cp.stop()


@asynccontextmanager
async def control_with_workspace(
    tmp: Path, monkeypatch: Any, **more: Any
) -> AsyncIterator[tuple[ControlPlane, Api, str]]:
    """A control plane asking for a report every 0.2 s (data planes' state under `tmp/state`),
    its admin client, and a data-plane token of its new workspace `a`."""
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp / "state"))
    async with running_control(tmp, monkeypatch, report_interval=0.2, **more) as (cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        yield cp, admin, await admin.token_for("a", "dataplane")


async def eventually(check: Any, timeout: float = 15.0, what: str = "") -> Any:
    """Call `check()` (async) until it returns something truthy; fail after `timeout`."""
    last: Any = None
    try:
        with anyio.fail_after(timeout):
            while True:
                last = await check()
                if last:
                    return last
                await anyio.sleep(0.05)  # a poll of the condition, not a guess at timing
    except TimeoutError:
        raise AssertionError(f"not reached: {what}; last seen: {last!r}") from None


def sidecar_config(tmp: Path, control: str, token: str, app: str, upstream: int) -> dict[str, Any]:
    return {
        "app": app,
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "inbound": [
            {
                "protocol": "http",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{upstream}",
                "services": [f"{app}-svc"],
            }
        ],
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "control": control,
        "control_token": token,
        "workspace": "a",
    }
