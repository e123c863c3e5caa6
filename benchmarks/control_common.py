"""What the control-plane benchmarks share: a control-plane process, a workspace, fake hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import yaml

import sofamesh.transport.net
from sofamesh.cli.client import Client
from sofamesh.governance.holder import Governance

PASSWORD = "benchmark-admin"


def start_control(
    tmp: Path, backend: str = "asyncio", **config: Any
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m sofamesh.control` on `backend`, on a free port with a sqlite store in `tmp`."""
    cfg = tmp / "control.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "store": f"sqlite://{tmp}/control.db",
                "registry": f"file://{tmp}/reg",
                **config,
            }
        )
    )
    env = {**os.environ, "SOFAMESH_ADMIN_PASSWORD": PASSWORD}
    argv = [sys.executable, "-m", "sofamesh.control", "-c", str(cfg), "--log-level", "WARNING",
            "--backend", backend]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "READY" not in line:
        proc.kill()
        raise RuntimeError(f"control plane did not start: {line!r}")
    return proc, "http://" + json.loads(line.split("READY ", 1)[1])["listen"]


def workspace(url: str, name: str = "bench") -> tuple[Client, str]:
    """An admin client, and a dataplane token of a new workspace `name`."""
    anon = Client(url, None)
    token = anon.call("POST", "/api/v1/login", {"user": "admin", "password": PASSWORD})["token"]
    admin = Client(url, token)
    admin.call("POST", "/api/v1/workspaces", {"name": name})
    dp = admin.call("POST", f"/api/v1/workspaces/{name}/tokens", {"role": "dataplane"})
    return admin, dp["token"]


class FakeHost:
    """A data plane without listeners: what the agent reports, and a real `Governance`."""

    mode = "sidecar"
    ready = True

    def __init__(self, app: str) -> None:
        self.app = app
        self.governance = Governance()

    def describe(self) -> dict[str, Any]:
        return {
            "listeners": [{"name": "inbound[0]", "address": "127.0.0.1:1"}],
            "provides": [f"{self.app}-svc"],
            "calls": ["shared-svc"],
            "health": "serving",
            "started_at": 0.0,
        }

    def traffic(self) -> list[dict[str, Any]]:
        return [
            {
                "direction": "inbound",
                "service": f"{self.app}-svc",
                "requests": 100,
                "errors": 0,
                "p50": 1.0,
                "p99": 5.0,
            },
        ]

    async def set_healthy(self, healthy: bool) -> None:
        pass

    def drain(self) -> None:
        pass


def spread_sources(hosts: int = 16) -> None:
    """Give this process's outgoing connections `hosts` loopback source addresses in turn:
    the data planes stand on hosts of their own, as they do in a mesh. The control plane
    takes at most a tenth of its connections from one address (max_connections_per_source),
    so 1,000 agents from 127.0.0.1 alone would be cut off at 500."""
    turn = iter(range(1 << 62))

    async def connect_tcp(host: str, port: int) -> anyio.abc.SocketStream:
        source = f"127.0.1.{1 + next(turn) % hosts}"
        return await anyio.connect_tcp(host, port, local_host=source)

    sofamesh.transport.net.connect_tcp = connect_tcp  # type: ignore[assignment]
