"""Two sidecars of one app on one host: each has its own upgrade socket, and `--upgrade`
takes over from the one its config names (by the admin address), never the other."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.e2e.test_upgrade import port_of, server_info, sidecar_config, upgrade_argv, upstream

from sofamesh.config import load_config
from sofamesh.demo.procs import Procs
from sofamesh.sidecar.upgrade import legacy_socket_path, upgrade_socket_path
from sofamesh.transport.handover import Channel

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp_path: Path, app_port: int, admin: int, port: int = 0) -> dict[str, Any]:
    cfg = sidecar_config(tmp_path, app_port, port, admin)
    del cfg["upgrade_socket"]  # the default: what this is about
    return cfg


async def test_each_sidecar_of_an_app_is_upgraded_through_its_own_socket(
    tmp_path: Path, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    admins = {"a": free_port(), "b": free_port()}
    async with upstream() as app_port, Procs(tmp_path, anyio_backend) as procs:
        ready = {
            n: await procs.sidecar(n, config(tmp_path, app_port, a)) for n, a in admins.items()
        }
        pids = {n: (await server_info(a))["pid"] for n, a in admins.items()}
        sockets = sorted(p.name for p in (tmp_path / "state" / "upgrade").iterdir())
        assert sockets == sorted(f"echo-{a}.sock" for a in admins.values())
        # A process naming a's admin API is refused by b, whose socket it reached.
        b_socket = tmp_path / "state" / "upgrade" / f"echo-{admins['b']}.sock"
        stranger = Channel(await anyio.connect_unix(b_socket))
        try:
            await stranger.send({"hello": 1, "pid": 1, "app": "echo",
                                 "admin": f"127.0.0.1:{admins['a']}"})  # fmt: skip
            refusal, _ = await stranger.receive()
        finally:
            await stranger.aclose()
        assert "admin API is" in refusal["refused"]
        # b's upgrade takes b over; a serves on, untouched.
        old_b, _ = procs.running["sidecar-b"]
        b_cfg = config(tmp_path, app_port, admins["b"], port_of(ready["b"]["inbound[0]"]))
        new = await procs.start("sidecar-b2", upgrade_argv(tmp_path, b_cfg, anyio_backend))
        assert new["inbound[0]"] == ready["b"]["inbound[0]"]
        with anyio.fail_after(20):
            assert await old_b.wait() == 0
        assert (await server_info(admins["b"]))["pid"] != pids["b"]
        info = await server_info(admins["a"])
        assert (info["pid"], info["state"]) == (pids["a"], "LIVE")


def test_the_default_path_is_named_by_the_admin_address(tmp_path: Path) -> None:
    def path(admin: str) -> Path:
        return upgrade_socket_path(load_config({"app": "shop", "admin": admin}))

    assert path("127.0.0.1:15000").name == "shop-15000.sock"
    assert path("127.0.0.2:15000").name == "shop-127.0.0.2-15000.sock"
    assert path("127.0.0.1:0") == legacy_socket_path(load_config({"app": "shop"}))
    explicit = load_config({"app": "shop", "upgrade_socket": str(tmp_path / "u.sock")})
    assert upgrade_socket_path(explicit) == tmp_path / "u.sock"


async def test_a_sidecar_on_the_former_default_path_is_still_upgraded(
    tmp_path: Path, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    admin = free_port()
    async with upstream() as app_port, Procs(tmp_path, anyio_backend) as procs:
        former = {**config(tmp_path, app_port, admin)}
        former["upgrade_socket"] = str(tmp_path / "state" / "upgrade" / "echo.sock")
        ready = await procs.sidecar("old", former)
        old, _ = procs.running["sidecar-old"]
        cfg = config(tmp_path, app_port, admin, port_of(ready["inbound[0]"]))
        await procs.start("sidecar-new", upgrade_argv(tmp_path, cfg, anyio_backend))
        with anyio.fail_after(20):
            assert await old.wait() == 0
        assert (tmp_path / "state" / "upgrade" / f"echo-{admin}.sock").exists()
