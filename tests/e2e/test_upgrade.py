"""Upgrading a sidecar process in place (`--upgrade`): under load, no request is lost.

Real processes: a sidecar (on the test's backend) in front of a plain HTTP app,
`wrk` with keep-alive connections through it, and a second sidecar started with
`--upgrade` in the middle of the load. Every response wrk saw is counted.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.demo.procs import Procs
from sofamesh.protocols.http.server import ConnInfo, Http1Server

pytestmark = pytest.mark.anyio

SERVICE = "com.example.Echo"


@asynccontextmanager
async def upstream() -> AsyncIterator[int]:
    """The app behind the sidecar, in the test's own loop: answers 200 "ok" at once."""

    async def ok(_req: HttpRequest, _info: ConnInfo) -> HttpResponse:
        return HttpResponse(200, [(b"content-type", b"text/plain")], b"ok\n")

    server = Http1Server(ok)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


def sidecar_config(tmp_path: Path, upstream: int, port: int = 0, admin: int = 0) -> dict[str, Any]:
    return {
        "app": "echo",
        "registry": f"file://{tmp_path}/reg?poll=0.05",
        "admin": f"127.0.0.1:{admin}",
        "upgrade_socket": str(tmp_path / "upgrade.sock"),
        "drain_timeout": 10,
        "inbound": [
            {
                "protocol": "http",
                "listen": f"127.0.0.1:{port}",
                "upstream": f"127.0.0.1:{upstream}",
                "services": [SERVICE],
            }
        ],
    }


def upgrade_argv(tmp_path: Path, config: dict[str, Any], backend: str) -> list[str]:
    path = tmp_path / "sidecar-new.yaml"
    path.write_text(yaml.safe_dump(config))
    return [
        sys.executable,
        "-m",
        "sofamesh.sidecar",
        "-c",
        str(path),
        "--backend",
        backend,
        "--upgrade",
    ]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


async def server_info(admin: int) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{admin}/server_info")
        result: dict[str, Any] = resp.json()
        return result


async def served(admin: int) -> int:
    """Inbound calls the process behind `admin` has answered."""
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"http://127.0.0.1:{admin}/stats")).json()
    return sum(s["rq_total"] for s in stats["services"] if s["direction"] == "inbound")


async def wait_for(condition: Any, timeout: float = 20.0) -> None:
    """Poll an external process's state until `condition()` holds (a deadline, no sleep)."""
    with anyio.fail_after(timeout):
        while not await condition():  # noqa: ASYNC110 - another process's state
            await anyio.sleep(0.05)


# Counts every response by status (wrk's own summary only says "Non-2xx or 3xx"), and
# shows the body of the first that is not a success.
COUNT_STATUSES = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) codes = {} end
function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  if status ~= 200 and not shown then shown = true; io.stderr:write(body .. "\\n") end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes")) do io.write(string.format("status %d: %d\\n", k, v)) end
  end
end
"""


def wrk_counts(output: str) -> dict[str, int]:
    """Requests, responses by status and socket errors from wrk's output."""
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    assert total is not None, output
    counts = {f"status {code}": int(n) for code, n in re.findall(r"status (\d+): (\d+)", output)}
    counts["requests"] = int(total.group(1))
    counts["socket_errors"] = sum(int(n) for n in errors.groups()) if errors else 0
    return counts


async def test_upgrade_under_wrk_load_loses_no_request(tmp_path: Path, anyio_backend: str) -> None:
    wrk = shutil.which("wrk")
    assert wrk is not None, "wrk is not installed (scripts/setup.sh installs it)"
    async with upstream() as app_port, Procs(tmp_path, anyio_backend) as procs:
        old_ready = await procs.sidecar("old", sidecar_config(tmp_path, app_port))
        port, admin = port_of(old_ready["inbound[0]"]), port_of(old_ready["admin"])
        old_pid = (await server_info(admin))["pid"]
        old_process, _ = procs.running["sidecar-old"]
        url = f"http://127.0.0.1:{port}/"
        result: dict[str, str] = {}
        script = tmp_path / "statuses.lua"
        script.write_text(COUNT_STATUSES)

        async def load() -> None:
            done = await anyio.run_process(
                [wrk, "-t1", "-c20", "-d8s", "-s", str(script), "-H", f"Host: {SERVICE}", url],
                check=False,
            )
            result["out"] = done.stdout.decode() + done.stderr.decode()

        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await wait_for(lambda: _more_than(admin, 500))
            # Same listeners (ports as bound), so every socket is handed over.
            config = sidecar_config(tmp_path, app_port, port, admin)
            new_ready = await procs.start(
                "sidecar-new", upgrade_argv(tmp_path, config, anyio_backend)
            )
            assert new_ready == {"inbound[0]": f"127.0.0.1:{port}", "admin": f"127.0.0.1:{admin}"}
            with anyio.fail_after(20):
                assert await old_process.wait() == 0
        counts = wrk_counts(result["out"])
        # Every request wrk sent was answered 200: none failed, none was cut off.
        assert counts["requests"] > 1000, result["out"]
        assert counts == {
            "status 200": counts["requests"],
            "requests": counts["requests"],
            "socket_errors": 0,
        }, result["out"]
        info = await server_info(admin)
        assert info["pid"] != old_pid and info["state"] == "LIVE"
        async with httpx.AsyncClient() as client:
            resp = await client.get(url, headers={"host": SERVICE})
        assert resp.status_code == 200
        old_log = (tmp_path / "sidecar-old.log").read_text()
        assert "serves now; draining and exiting" in old_log
        assert "took over from pid" in (tmp_path / "sidecar-new.log").read_text()
        # The publication stayed, and is the new process's now.
        entries = list((tmp_path / "reg").rglob("*.json"))
        assert len(entries) == 1
        assert json.loads(entries[0].read_text())["pid"] == info["pid"]


async def _more_than(admin: int, n: int) -> bool:
    return await served(admin) > n
