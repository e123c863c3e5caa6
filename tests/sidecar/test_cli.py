"""`python -m sofamesh.sidecar` as a process: bad config, readiness line, SIGTERM drain."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import yaml

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
