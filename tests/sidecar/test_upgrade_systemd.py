"""`--upgrade --detach` as systemd's `ExecReload=` runs it, with `NOTIFY_SOCKET` set.

The command returns once the new sidecar serves; the new process tells the service
manager that it is the service's main process now (`MAINPID=`), and the old one exits 0.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from tests.e2e.test_upgrade import port_of, server_info, sidecar_config, upgrade_argv, upstream

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio


async def test_detached_upgrade_returns_when_ready_and_names_the_new_main_pid(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with upstream() as app_port, Procs(tmp_path, anyio_backend) as procs:
        ready = await procs.sidecar("old", sidecar_config(tmp_path, app_port))
        port, admin = port_of(ready["inbound[0]"]), port_of(ready["admin"])
        old_process, _ = procs.running["sidecar-old"]
        config = sidecar_config(tmp_path, app_port, port, admin)
        argv = [*upgrade_argv(tmp_path, config, anyio_backend), "--detach"]
        manager = tmp_path / "notify.sock"
        async with await anyio.create_unix_datagram_socket(local_path=manager) as notify:
            env = {**os.environ, "NOTIFY_SOCKET": str(manager)}
            # Its stderr, like systemd's journal, is shared with the new sidecar, which
            # outlives the command: a file, not a pipe that would stay open.
            with (tmp_path / "reload.log").open("wb") as log, anyio.fail_after(30):
                command = await anyio.open_process(argv, env=env, stderr=log)
                async with command:
                    assert command.stdout is not None
                    out = b"".join([chunk async for chunk in command.stdout])
                    assert await command.wait() == 0, (tmp_path / "reload.log").read_text()
                assert out.decode().startswith("SOFAMESH READY {")
                message, _ = await notify.receive()
        state = dict(line.split("=", 1) for line in message.decode().split("\n"))
        new_pid = int(state["MAINPID"])
        try:
            assert state["READY"] == "1"
            with anyio.fail_after(20):
                assert await old_process.wait() == 0
            assert (await server_info(admin))["pid"] == new_pid
        finally:
            os.kill(new_pid, signal.SIGTERM)
            await _gone(new_pid)


async def test_detach_without_upgrade_is_a_usage_error() -> None:
    done = await anyio.run_process(
        [sys.executable, "-m", "sofamesh.sidecar", "--detach", "--check"], check=False
    )
    assert done.returncode == 2 and b"--detach goes with --upgrade" in done.stderr


async def _gone(pid: int) -> None:
    """Poll until the process `pid` (not our child: it runs on its own) has exited."""
    with anyio.fail_after(20):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            await anyio.sleep(0.05)
