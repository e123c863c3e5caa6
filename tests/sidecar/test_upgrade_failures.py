"""Upgrades that must not happen: each leaves the running sidecar serving, untouched.

A new process with a bad config, or one that cannot bind a new listener; a second
upgrade while one is under way; a peer of another user. Real sidecar processes on the
test's backend, except for the other user (an in-process sidecar told that its user is
someone else, as a test cannot switch users).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from tests.e2e.test_upgrade import (
    SERVICE,
    port_of,
    server_info,
    sidecar_config,
    upgrade_argv,
    upstream,
)

from sofamesh.config import load_config
from sofamesh.demo.procs import Procs
from sofamesh.sidecar.app import Sidecar
from sofamesh.transport.handover import Channel, HandoverError

pytestmark = pytest.mark.anyio

KEEPS_SERVING = "upgrade failed, the running sidecar keeps serving"


async def still_serving(port: int, admin: int, pid: int) -> None:
    """The old process answers on its listeners, as before."""
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{port}/", headers={"host": SERVICE})
    assert resp.status_code == 200
    info = await server_info(admin)
    assert (info["pid"], info["state"]) == (pid, "LIVE")


async def run_upgrade(argv: list[str]) -> tuple[int, str]:
    done = await anyio.run_process(argv, check=False)
    return done.returncode, done.stderr.decode()


async def test_bad_config_or_busy_port_leave_the_old_one_serving(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with upstream() as app_port, Procs(tmp_path, anyio_backend) as procs:
        ready = await procs.sidecar("old", sidecar_config(tmp_path, app_port))
        port, admin = port_of(ready["inbound[0]"]), port_of(ready["admin"])
        pid = (await server_info(admin))["pid"]
        good = sidecar_config(tmp_path, app_port, port, admin)

        bad = {**good, "drain_timeout": -1}
        status, err = await run_upgrade(upgrade_argv(tmp_path, bad, anyio_backend))
        assert status == 2 and KEEPS_SERVING in err and "drain_timeout" in err, err
        await still_serving(port, admin, pid)

        with socket.socket() as taken:  # a new listener on a port another process holds
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = {**good, "outbound": [{"protocol": "http", "listen": f"127.0.0.1:"
                                          f"{taken.getsockname()[1]}"}]}  # fmt: skip
            status, err = await run_upgrade(upgrade_argv(tmp_path, busy, anyio_backend))
        assert status == 1 and KEEPS_SERVING in err and "cannot listen on" in err, err
        await still_serving(port, admin, pid)
    log = (tmp_path / "sidecar-old.log").read_text()
    assert "upgrade failed (the other process closed the connection)" in log


async def test_a_second_upgrade_under_way_is_refused(tmp_path: Path, anyio_backend: str) -> None:
    async with upstream() as app_port, Procs(tmp_path, anyio_backend) as procs:
        ready = await procs.sidecar("old", sidecar_config(tmp_path, app_port))
        port, admin = port_of(ready["inbound[0]"]), port_of(ready["admin"])
        pid = (await server_info(admin))["pid"]
        old_process, _ = procs.running["sidecar-old"]
        config = sidecar_config(tmp_path, app_port, port, admin)
        # The first upgrade: a peer that takes the sockets and then never says ready.
        first = Channel(await anyio.connect_unix(tmp_path / "upgrade.sock"))
        await first.send({"hello": 1, "pid": 1, "app": "echo"})
        offer, sockets = await first.receive()
        assert sorted(e["name"] for e in offer["listeners"]) == ["admin", "inbound[0]"]
        for sock in sockets:
            sock.close()
        status, err = await run_upgrade(upgrade_argv(tmp_path, config, anyio_backend))
        assert status == 1 and "another upgrade of this sidecar is under way" in err, err
        await first.aclose()  # gives up: the old one serves on, and can be upgraded again
        await still_serving(port, admin, pid)
        # Then a real upgrade, which also adds a listener: bound afresh by the new process.
        config["outbound"] = [{"protocol": "http", "listen": "127.0.0.1:0"}]
        new = await procs.start("sidecar-new", upgrade_argv(tmp_path, config, anyio_backend))
        assert new["inbound[0]"] == ready["inbound[0]"] and "outbound[0]" in new
        with anyio.fail_after(20):
            assert await old_process.wait() == 0
        assert (await server_info(admin))["pid"] != pid
        # The new one serves upgrades in turn.
        second, _ = procs.running["sidecar-new"]
        await procs.start("sidecar-third", upgrade_argv(tmp_path, config, anyio_backend))
        with anyio.fail_after(20):
            assert await second.wait() == 0
    log = (tmp_path / "sidecar-old.log").read_text()
    assert "upgrade refused: another upgrade of this sidecar is under way" in log


async def test_a_peer_of_another_user_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sofamesh.sidecar.upgrade")
    inbound = {"protocol": "http", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9",
               "services": [SERVICE]}  # fmt: skip
    config: dict[str, Any] = {"app": "echo", "registry": "memory://", "inbound": [inbound],
                              "upgrade_socket": str(tmp_path / "up.sock")}  # fmt: skip
    sidecar = Sidecar(load_config(config, env={}), upgrades=True)
    assert sidecar.upgrades is not None
    sidecar.upgrades.uid = os.getuid() + 1  # we are someone else, to this sidecar
    async with anyio.create_task_group() as tg:
        await tg.start(sidecar.run)
        assert (tmp_path / "up.sock").stat().st_mode & 0o777 == 0o600
        peer = Channel(await anyio.connect_unix(tmp_path / "up.sock"))
        await peer.send({"hello": 1, "pid": 1, "app": "echo"})
        with pytest.raises(HandoverError, match="closed the connection"):
            await peer.receive()
        await peer.aclose()
        assert sidecar.ready and not sidecar.handed_over
        sidecar.stop()
    assert f"upgrade refused: a process of uid {os.getuid()} connected" in caplog.text
    assert not (tmp_path / "up.sock").exists()  # removed on a plain stop


def test_upgrade_without_a_running_sidecar_says_so(tmp_path: Path) -> None:
    config = {"app": "lonely", "registry": "memory://", "upgrade_socket": str(tmp_path / "no")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(path), "--upgrade"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "no running sidecar answers on" in done.stderr, done.stderr
