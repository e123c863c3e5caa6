"""The local API stays local: a token, limits on what is published, and CSRF defences.

Against a real sidecar process: a local process without the token cannot publish (the
hijack of another app's service); with the token, only allowed services, loopback
upstreams and bounded leases are accepted; a web page's `text/plain` POSTs and
cross-origin requests are refused; an SDK in sidecar mode finds the token by itself.
Every refusal is asserted by its status and by the sidecar's log line.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import sofamesh
from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
JSON = {"content-type": "application/json"}


def config(tmp: Path, **more: Any) -> dict[str, Any]:
    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "inbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        **more,
    }


LIMITS = {"services": ["com.example.mine.*"], "max_lease": 60}


def default_token_path(admin: str) -> Path:
    """Where a sidecar keeps its token by default, as docs/configuration.md says."""
    port = admin.rsplit(":", 1)[1]
    return Path(tempfile.gettempdir()) / f"sofamesh-{os.getuid()}" / f"sidecar-{port}.token"


def log_of(tmp: Path) -> str:
    return (tmp / "sidecar-orders.log").read_text()


def publication(service: str, **more: Any) -> dict[str, Any]:
    return {"service": service, "upstream": "127.0.0.1:9", "app": "orders", "lease": 5, **more}


async def test_a_local_process_without_the_token_cannot_hijack_a_service(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        bound = await procs.sidecar("orders", config(tmp_path))
        admin = f"http://{bound['admin']}"
        hijack = publication(ORDERS, lease=float("nan"))
        async with httpx.AsyncClient() as c:
            r = await c.post(f"{admin}/api/v1/publish", content=json.dumps(hijack), headers=JSON)
            assert r.status_code == 403
            assert "refused POST /api/v1/publish" in log_of(tmp_path)
            assert "needs the sidecar's token" in log_of(tmp_path)
            assert (await c.get(f"{admin}/api/v1/info")).status_code == 403
            wrong = {**JSON, "authorization": "Bearer guess"}
            r = await c.post(f"{admin}/api/v1/publish", json=publication(ORDERS), headers=wrong)
            assert r.status_code == 403
            assert not (await c.get(f"{admin}/config_dump")).json()["registrations"]


async def test_publishing_with_the_token_stays_within_limits(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        bound = await procs.sidecar("orders", config(tmp_path, local_api=LIMITS))
        admin = f"http://{bound['admin']}"
        path = default_token_path(bound["admin"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        auth = {"authorization": f"Bearer {path.read_text().strip()}"}
        async with httpx.AsyncClient() as c:
            refusals = [
                (publication(ORDERS), 403, "'com.example.Orders' is not one this app may publish"),
                (
                    publication("com.example.mine.A", upstream="10.1.2.3:80"),
                    403,
                    "upstream 10.1.2.3:80 is neither loopback nor allowed",
                ),
                (publication("com.example.mine.A", lease=float("nan")), 400, "lease: must be"),
                (publication("com.example.mine.A", lease=1e9), 400, "lease: must be"),
                (publication("com.example.mine.A", lease="10"), 400, "lease: expected a number"),
            ]
            for body, status, line in refusals:
                raw = json.dumps(body).encode()  # NaN as Python writes it, as the attacker did
                r = await c.post(f"{admin}/api/v1/publish", content=raw, headers={**auth, **JSON})
                assert r.status_code == status, (body, r.text)
                assert line in log_of(tmp_path)
            r = await c.post(
                f"{admin}/api/v1/publish", json=publication("com.example.mine.A"), headers=auth
            )
            assert r.status_code == 200
        procs.stop("sidecar-orders")
        with anyio.fail_after(15):
            while path.exists():  # noqa: ASYNC110 - the sidecar removes it as it exits
                await anyio.sleep(0.05)


async def test_browsers_cannot_drive_the_admin_api(tmp_path: Path, anyio_backend: str) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        bound = await procs.sidecar("orders", config(tmp_path))
        admin = f"http://{bound['admin']}"
        plain = {"content-type": "text/plain"}  # what a page may POST cross-origin unasked
        async with httpx.AsyncClient() as c:
            for path in ("/healthcheck/fail", "/quitquitquit", "/api/v1/publish", "/logging"):
                r = await c.post(f"{admin}{path}", headers=plain, content=b"{}")
                assert r.status_code == 400, path
                assert f"refused POST {path}" in log_of(tmp_path)
            evil = {**JSON, "origin": "http://evil.example"}
            r = await c.post(f"{admin}/healthcheck/fail", headers=evil)
            assert r.status_code == 403
            assert "cross-origin request from 'http://evil.example'" in log_of(tmp_path)
            rebound = {**JSON, "origin": f"http://evil.example:{bound['admin'].rsplit(':')[1]}"}
            assert (await c.post(f"{admin}/healthcheck/fail", headers=rebound)).status_code == 403
            assert (await c.get(f"{admin}/ready")).text == "LIVE\n"  # nothing took effect
            own = {**JSON, "origin": admin}
            assert (await c.post(f"{admin}/healthcheck/fail", headers=own)).status_code == 200
            assert (await c.get(f"{admin}/ready")).status_code == 503


async def test_the_sdk_finds_the_token_by_itself(tmp_path: Path, anyio_backend: str) -> None:
    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"mine"})

    async with Procs(tmp_path, anyio_backend) as procs:
        bound = await procs.sidecar("orders", config(tmp_path, local_api=LIMITS))
        cfg = {"app": "orders", "mode": "sidecar", "sidecar": bound["admin"]}
        async with (
            sofamesh.open_mesh(cfg, env={}) as mesh,
            mesh.serve_asgi(asgi, ["com.example.mine.A"], lifespan=False),
            httpx.AsyncClient() as c,
        ):
            r = await c.get(
                f"http://{bound['outbound[0]']}/x", headers={"host": "com.example.mine.A"}
            )
            assert r.text == "mine"
