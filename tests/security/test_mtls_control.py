"""Sidecars whose identity the control plane issues: mTLS end to end, renewal, fail closed.

Two sidecars with `tls: {mode: strict}`, `control:` and no certificate of
their own: each makes its key, has the in-process control plane sign its
CSR, and calls the other over mutual TLS. Certificates live a few seconds
here, so renewal at 2/3 of their life happens under a constant load.
"""

from __future__ import annotations

import datetime
import os
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.control.harness import eventually, running_control
from tests.security.meshes import ORDERS, app_server, outbound, sidecar
from tests.security.test_mtls_rotation import Load, served_certificate

from sofamesh.config import load_config
from sofamesh.control.enroll import IdentityUnavailable
from sofamesh.security.enroll import identity_files
from sofamesh.security.identity import IdentityFiles
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio


def config(tmp: Path, app: str, control: str, token: str, upstream: int | None) -> dict[str, Any]:
    side: dict[str, Any] = {"outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}]}
    if upstream is not None:
        inbound = {"protocol": "http", "listen": "127.0.0.1:0", "services": [ORDERS]}
        side = {"inbound": [{**inbound, "upstream": f"127.0.0.1:{upstream}"}]}
    return {
        "app": app,
        "registry": f"file://{tmp}/reg?poll=0.05",
        "control": control,
        "control_token": token,
        "workspace": "a",
        "tls": {"mode": "strict"},
        **side,
    }


async def served_serial(car: Sidecar, client: IdentityFiles) -> int:
    """The serial of the certificate a new connection to `car`'s inbound listener is given."""
    return (await served_certificate(car, client, client)).serial_number


async def test_identities_from_the_control_plane_renew_under_load(
    tmp_path: Path, monkeypatch: Any
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(state))
    life = 4.5  # renewed every 3 s
    async with (
        running_control(tmp_path, monkeypatch, cert_life=life, report_interval=0.2) as (cp, admin),
        AsyncExitStack() as stack,
    ):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        token = await admin.token_for("a", "dataplane")
        control = f"http://{cp.bound}"
        app = await stack.enter_async_context(app_server())
        prov = await stack.enter_async_context(
            sidecar(config(tmp_path, "orders", control, token, app))
        )
        cons = await stack.enter_async_context(
            sidecar(config(tmp_path, "shop", control, token, None))
        )
        shop_files = identity_files(state, "a", "shop")
        assert os.stat(shop_files.key).st_mode & 0o077 == 0

        # The inventory shows each data plane's identity, its expiry and its mode.
        async def reported() -> Any:
            rows = await admin.ok("GET", "/api/v1/workspaces/a/sidecars")
            return len(rows) == 2 and all(r.get("tls", {}).get("spiffe_id") for r in rows) and rows

        rows = {r["app"]: r for r in await eventually(reported, what="both report their identity")}
        assert rows["orders"]["tls"]["spiffe_id"] == "spiffe://cluster.local/ws/a/app/orders"
        assert rows["orders"]["tls"]["mode"] == "strict"
        assert rows["orders"]["tls"]["issuer"] == "control"
        assert rows["orders"]["tls"]["cert_state"] == "OK"

        async with anyio.create_task_group() as tg:
            load = Load(f"http://{outbound(cons)}/")
            for _ in range(4):
                tg.start_soon(load.run)
            await load.wait_calls(20)
            first = await served_serial(prov, shop_files)
            before = _ca_api(cp).issued
            # Two renewals of each sidecar under load: at 2/3 of a 4.5 s life.
            await eventually(lambda: _at_least(cp, before + 4), timeout=30, what="renewals")
            await load.wait_calls(20)
            assert await served_serial(prov, shop_files) != first
            tg.cancel_scope.cancel()
        assert load.failed == [] and load.ok > 40


def _ca_api(cp: Any) -> Any:
    route = next(r for r in cp.routes if r.path.endswith("/certificates"))
    return route.handler.__self__


async def _at_least(cp: Any, n: int) -> bool:
    return int(_ca_api(cp).issued) >= n


async def test_no_control_plane_and_no_identity_means_no_start(
    tmp_path: Path, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # a port nobody answers on
    cfg = config(tmp_path, "orders", f"http://127.0.0.1:{port}", "smt_x", 1)
    car = Sidecar(load_config(cfg, env={}))
    with pytest.raises(BaseException) as caught:  # a group, or the error itself
        with anyio.fail_after(30):
            await car.run()
    leaves = _leaves(caught.value)
    assert any(isinstance(e, IdentityUnavailable) for e in leaves), leaves
    assert not car.bound  # no listener was opened
    assert "no mTLS identity, not starting" in caplog.text


async def test_a_persisted_identity_is_reused_until_it_expires(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    async with running_control(tmp_path, monkeypatch) as (cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        token = await admin.token_for("a", "dataplane")
        cfg = config(tmp_path, "orders", f"http://{cp.bound}", token, 1)
        async with sidecar(cfg) as car:
            first = car.runtime.tls.contexts.source.loaded  # type: ignore[union-attr]
            assert first is not None
        assert _ca_api(cp).issued == 1
        cp.stop()
    # The control plane is gone: the restart uses the identity it persisted.
    async with sidecar(cfg) as car:
        again = car.runtime.tls.contexts.source.loaded  # type: ignore[union-attr]
        assert again is not None and again.cert.serial_number == first.cert.serial_number
        assert again.not_after > datetime.datetime.now(datetime.UTC)
        assert car.bound


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


async def test_an_sdk_app_gets_its_identity_from_the_control_plane(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import sofamesh

    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    async with running_control(tmp_path, monkeypatch) as (cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        token = await admin.token_for("a", "dataplane")
        control = f"http://{cp.bound}"
        shop = config(tmp_path, "shop", control, token, None)
        del shop["outbound"]
        async with (
            app_server() as app,
            sidecar(config(tmp_path, "orders", control, token, app)),
            sofamesh.open_mesh(shop, env={}) as mesh,
        ):
            resp = await mesh.request(ORDERS, "GET", "/", headers={"x-sofamesh-caller": "web"})
            assert resp.status == 200, resp.body
            assert resp.body == b'{"caller": "shop"}'  # verified from its certificate
            assert mesh.runtime.stats.counters["tls.client_handshakes"] >= 1
        assert _ca_api(cp).issued == 2
