"""A failing test shows the logs of the processes it started (run in a pytest of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sofamesh

SRC = str(Path(sofamesh.__file__).parents[1])  # this checkout's sofamesh, whatever the cwd

FAILING = """
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_fails(sofamesh_sidecar):
    await sofamesh_sidecar("shop", outbound=[{"protocol": "http"}])
    assert False, "the test body failed"


async def test_passes(sofamesh_sidecar):
    await sofamesh_sidecar("quiet", outbound=[{"protocol": "http"}])
"""


def test_a_failure_report_holds_each_sidecar_log_and_every_process_is_stopped(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_user.py").write_text(FAILING)
    argv = [sys.executable, "-m", "pytest", "-p", "sofamesh.testing", "-p", "anyio", "-q"]
    argv += ["-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"), "test_user.py"]
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 1 and "1 failed, 1 passed" in out, out + proc.stderr
    assert "sofamesh: sidecar-shop log" in out
    assert "sidecar for app shop ready" in out  # the sidecar's own log line
    assert "sidecar-quiet" not in out  # only a failing test's processes are shown
    assert (
        "drained"
        in (tmp_path / "t").joinpath("test_fails0", "sofamesh-logs", "sidecar-shop.log").read_text()
    )  # stopped with SIGTERM: it drained


def test_importing_sofamesh_does_not_import_pytest() -> None:
    code = "import sys, sofamesh, sofamesh.sidecar.app; print('pytest' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "False", proc.stdout + proc.stderr
