"""`python -m sofamesh.sidecar` as a process: bad config, readiness line, SIGTERM drain."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import yaml

import sofamesh
from sofamesh.config import Address, load_config
from sofamesh.demo.procs import Procs
from sofamesh.registry import FileRegistry

SIDECAR = [sys.executable, "-m", "sofamesh.sidecar"]


def test_bad_config_exits_2_listing_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "mesh.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "app": "orders",
                "registry": "zk://nowhere",
                "admin": "localhost",
                "inbound": [{"protocol": "http", "listen": "127.0.0.1:1", "services": ["a"]}],
                "outbound": [{"protocol": "smtp", "listen": "127.0.0.1:2"}],
            }
        )
    )
    proc = subprocess.run([*SIDECAR, "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    err = proc.stderr
    assert "invalid configuration" in err
    for path in ("registry:", "admin:", "outbound[0].protocol:"):
        assert f"  - {path}" in err, err
    assert "Traceback" not in err


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*SIDECAR, "-c", str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "cannot read" in proc.stderr


@pytest.mark.anyio
async def test_sigterm_unpublishes_and_exits_0(tmp_path: Path, anyio_backend: str) -> None:
    registry = f"file://{tmp_path}/reg?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("a")
        ready = await procs.sidecar(
            "orders",
            {
                "app": "orders",
                "registry": registry,
                "admin": "127.0.0.1:0",
                "inbound": [
                    {
                        "protocol": "http",
                        "listen": "127.0.0.1:0",
                        "upstream": f"127.0.0.1:{app['port']}",
                        "services": ["com.example.Orders"],
                    }
                ],
            },
        )
        assert set(ready) == {"inbound[0]", "admin"}
        process, _ = procs.running["sidecar-orders"]
        async with FileRegistry(tmp_path / "reg") as reg:
            assert await reg.list_services() == ["com.example.Orders"]
            procs.stop("sidecar-orders", signal.SIGTERM)
            with anyio.fail_after(15):
                assert await process.wait() == 0
            # unpublished explicitly, not left to lease expiry: the entry file is gone
            assert not list((tmp_path / "reg").rglob("*.json"))
        log = (tmp_path / "sidecar-orders.log").read_text()
        assert "draining" in log and "drained" in log


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SIDECAR, *args], capture_output=True, text=True, timeout=30, env=env)


def test_version_prints_the_package_version() -> None:
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"python -m sofamesh.sidecar {sofamesh.__version__}\n"


def test_help_names_the_command_the_user_typed() -> None:
    assert _run("--help").stdout.startswith("usage: python -m sofamesh.sidecar ")
    script = (
        "import sys; sys.argv[0] = '/usr/local/bin/sofamesh-sidecar'; "
        "from sofamesh.sidecar.__main__ import main; main(['--help'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert proc.stdout.startswith("usage: sofamesh-sidecar "), proc.stdout + proc.stderr


def test_unknown_log_level_is_a_clear_usage_error() -> None:
    proc = _run("--log-level", "foo", "--check")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "argument --log-level: unknown log level 'foo' (use one of" in proc.stderr


def test_check_validates_without_binding(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a listen address in use: --check must not bind it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        good = tmp_path / "good.yaml"
        good.write_text(
            yaml.safe_dump({"app": "a", "outbound": [{"protocol": "http", "listen": str(port)}]})
        )
        proc = _run("-c", str(good), "--check", "--log-level", "WARNING")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"sofamesh.sidecar: configuration OK ({good})\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"app": "a", "outbound": [{"protocol": "smtp"}]}))
    proc = _run("-c", str(bad), "--check")
    assert proc.returncode == 2 and "outbound[0].protocol:" in proc.stderr


def test_listen_as_a_number_or_a_string_means_the_same() -> None:
    configs = [
        load_config({"app": "a", "outbound": [{"protocol": "http", "listen": v}]}, env={})
        for v in (8080, "8080", "127.0.0.1:8080")
    ]
    assert {c.outbound[0].listen for c in configs} == {Address("127.0.0.1", 8080)}
