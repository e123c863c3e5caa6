"""Fail closed: invalid rules at start stop a sidecar (exit 2, every problem listed) and an
SDK, unless the sidecar kept the last good document, which it then runs on, loudly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

import sofamesh
from sofamesh.config import ConfigError
from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
GOOD = {
    "version": "v1",
    "auth": {"inbound": {"rules": [{"service": ORDERS, "allow": ["shop"]}]}},
}
# Two problems, both to be listed: a rate limit without a count, and an unknown key.
BAD = {"version": "v2", "rate_limits": [{"service": ORDERS}], "bogus": 1}


def config(tmp: Path, app_port: int) -> dict[str, Any]:
    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "inbound": [
            {
                "protocol": "http",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{app_port}",
                "services": [ORDERS],
            }
        ],
        "rules_file": str(tmp / "rules.yaml"),
        "rules_last_good": str(tmp / "state" / "last-good.json"),
    }


def test_invalid_rules_at_start_exit_2_listing_every_problem(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(BAD))
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, 9)))
    proc = subprocess.run(
        [sys.executable, "-m", "sofamesh.sidecar", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "READY" not in proc.stdout
    origin = f"file:{tmp_path / 'rules.yaml'}"
    assert f"  - {origin}: rate_limits[0].count: required" in proc.stderr
    assert f"  - {origin}: bogus: unknown key" in proc.stderr


async def test_a_restart_on_invalid_rules_runs_on_the_last_good_ones(
    tmp_path: Path, anyio_backend: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(GOOD))
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("orders-1")
        cfg = config(tmp_path, app["port"])
        await procs.sidecar("orders", cfg)
        process, _ = procs.running["sidecar-orders"]
        procs.stop("sidecar-orders", signal.SIGTERM)
        with anyio.fail_after(15):
            assert await process.wait() == 0
        assert (tmp_path / "state" / "last-good.json").exists()
        rules.write_text(yaml.safe_dump(BAD))
        bound = await procs.sidecar("orders", cfg)
        log = (tmp_path / "sidecar-orders.log").read_text()
        assert "running on the LAST GOOD rules (v1" in log
        assert "rate_limits[0].count: required" in log
        async with httpx.AsyncClient() as c:
            dump = (await c.get(f"http://{bound['admin']}/config_dump")).json()
            assert dump["rules"]["version"] == "v1"
            assert dump["rules"]["origin"].startswith("last-good:")
            # and the rules hold: an anonymous caller is not "shop"
            r = await c.get(f"http://{bound['inbound[0]']}/", headers={"host": ORDERS})
            assert r.status_code == 403


async def test_the_sdk_refuses_to_start_on_invalid_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(BAD))
    cfg = {"app": "shop", "registry": "memory://", "rules_file": str(rules)}
    with pytest.raises(ConfigError) as e:
        async with sofamesh.open_mesh(cfg, env={}):
            pass
    problems = e.value.problems
    assert len(problems) == 2 and f"file:{rules}: rate_limits[0].count: required" in problems
    assert problems[0].startswith(f"file:{rules}: bogus: unknown key")
