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
import anyio.abc
import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import yaml
from hyperframe.frame import Frame, HeadersFrame

import sofamesh
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config.local_api import default_token_path
from sofamesh.demo.procs import Procs
from sofamesh.protocols.h2.http import H2HttpHandler
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.http.server import ConnInfo, Http1Server
from sofamesh.registry.memory import MemoryHub, MemoryRegistry

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
        token = default_token_path(admin).read_text()
        url = f"http://127.0.0.1:{port}/"
        result: dict[str, str] = {}
        script = tmp_path / "statuses.lua"
        script.write_text(COUNT_STATUSES)

        # A lost request, not a slow one, is what fails: wrk's timeout (2 s) would abort a
        # request the loaded machine merely delayed while the new process starts.
        argv = [wrk, "-t1", "-c20", "-d8s", "--timeout", "10s", "-s", str(script)]

        async def load() -> None:
            done = await anyio.run_process([*argv, "-H", f"Host: {SERVICE}", url], check=False)
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
        assert default_token_path(admin).read_text() == token  # the local API's, kept
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


BOLT_IFACE, BOLT_VERSION = "com.example.Slow", "1.0"
BOLT_SERVICE = f"{BOLT_IFACE}:{BOLT_VERSION}"
CALLERS = 50


class Slow:
    """Answers after a while, so that calls are in flight whenever the upgrade happens."""

    async def echo(self, value: str) -> str:
        await anyio.sleep(0.05)
        return value


def bolt_sidecar_config(tmp_path: Path, upstream: str, port: int = 0) -> dict[str, Any]:
    return {
        "app": "slow",
        "registry": f"file://{tmp_path}/reg?poll=0.05",
        "upgrade_socket": str(tmp_path / "upgrade.sock"),
        "drain_timeout": 10,
        "inbound": [
            {
                "protocol": "bolt",
                "listen": f"127.0.0.1:{port}",
                "upstream": upstream,
                "services": [BOLT_SERVICE],
            }
        ],
    }


async def test_bolt_upgrade_with_calls_in_flight_fails_none(
    tmp_path: Path, anyio_backend: str
) -> None:
    outcomes = {"ok": 0, "failed": 0}
    errors: list[str] = []
    stop = anyio.Event()
    provider_registry = MemoryRegistry(MemoryHub())  # the sidecar alone publishes to callers
    async with (
        sofamesh.open_mesh({"app": "prov", "registry": "memory://"}, env={},
                           registry=provider_registry) as prov,
        prov.serve_bolt(Slow(), BOLT_IFACE, version=BOLT_VERSION) as served,
        Procs(tmp_path, anyio_backend) as procs,
    ):  # fmt: skip
        ready = await procs.sidecar("old", bolt_sidecar_config(tmp_path, str(served.address)))
        port = port_of(ready["inbound[0]"])
        old_process, _ = procs.running["sidecar-old"]
        shop = {"app": "shop", "registry": f"file://{tmp_path}/reg?poll=0.05"}
        async with sofamesh.open_mesh(shop, env={}) as mesh:
            slow = mesh.bolt_consumer(BOLT_IFACE, BOLT_VERSION, timeout=10)

            async def caller(n: int) -> None:
                while not stop.is_set():
                    try:
                        assert await slow.echo(f"v{n}") == f"v{n}"
                        outcomes["ok"] += 1
                    except Exception as exc:
                        outcomes["failed"] += 1
                        errors.append(repr(exc))

            async with anyio.create_task_group() as tg:
                for n in range(CALLERS):
                    tg.start_soon(caller, n)
                await wait_for(lambda: _at_least(outcomes, 500))
                config = bolt_sidecar_config(tmp_path, str(served.address), port)
                await procs.start("sidecar-new", upgrade_argv(tmp_path, config, anyio_backend))
                with anyio.fail_after(20):
                    assert await old_process.wait() == 0
                after = outcomes["ok"]
                await wait_for(lambda: _at_least(outcomes, after + 500))
                stop.set()
    assert outcomes["failed"] == 0, errors[:5]
    assert "serves now; draining and exiting" in (tmp_path / "sidecar-old.log").read_text()


async def _at_least(outcomes: dict[str, int], n: int) -> bool:
    return outcomes["ok"] + outcomes["failed"] >= n


class Held:
    """An h2c app whose `/slow` requests wait until released."""

    def __init__(self) -> None:
        self.entered = 0
        self.release = anyio.Event()

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        if req.target == "/slow":
            self.entered += 1
            await self.release.wait()
        return HttpResponse(200, [(b"content-type", b"text/plain")], b"ok")


@asynccontextmanager
async def h2_app(app: Held) -> AsyncIterator[int]:
    server = H2Server(H2HttpHandler(app, max_body=1 << 20))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def test_h2_upgrade_sends_goaway_and_finishes_streams_in_flight(
    tmp_path: Path, anyio_backend: str
) -> None:
    app = Held()
    async with h2_app(app) as app_port, Procs(tmp_path, anyio_backend) as procs:
        config = sidecar_config(tmp_path, app_port)
        config["inbound"][0]["protocol"] = "h2"
        ready = await procs.sidecar("old", config)
        port = port_of(ready["inbound[0]"])
        old_process, _ = procs.running["sidecar-old"]
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            for sid in (1, 3, 5):
                headers = [(":method", "GET"), (":scheme", "http"), (":path", "/slow"),
                           (":authority", SERVICE)]  # fmt: skip
                conn.send_headers(sid, headers, end_stream=True)
            await sock.send(conn.data_to_send())
            await wait_for(lambda: _entered(app, 3))
            config["inbound"][0]["listen"] = f"127.0.0.1:{port}"
            config["admin"] = ready["admin"]
            await procs.start("sidecar-new", upgrade_argv(tmp_path, config, anyio_backend))
            events = await _until(sock, conn, h2.events.ConnectionTerminated)
            goaway = events[-1]
            assert isinstance(goaway, h2.events.ConnectionTerminated)
            assert goaway.error_code == 0 and goaway.last_stream_id == 5
            app.release.set()
            statuses = await _responses_after_goaway(sock, conn)
        assert statuses == {1: "200", 3: "200", 5: "200"}
        with anyio.fail_after(20):
            assert await old_process.wait() == 0
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            resp = await client.get(f"http://127.0.0.1:{port}/", headers={"host": SERVICE})
        assert resp.status_code == 200


async def _entered(app: Held, n: int) -> bool:
    return app.entered >= n


async def _until(
    sock: anyio.abc.SocketStream, conn: h2.connection.H2Connection, kind: type
) -> list[h2.events.Event]:
    """Events received until one of `kind`."""
    seen: list[h2.events.Event] = []
    with anyio.fail_after(20):
        while True:
            for event in conn.receive_data(await sock.receive()):
                seen.append(event)
                if isinstance(event, kind):
                    return seen
            await sock.send(conn.data_to_send())


async def _responses_after_goaway(
    sock: anyio.abc.SocketStream, conn: h2.connection.H2Connection
) -> dict[int, str]:
    """Each stream's status, read frame by frame until the server closes (the `h2` state
    machine takes no frame after a GOAWAY, though RFC 9113 6.8 lets streams finish)."""
    data = b""
    with anyio.fail_after(20):
        while True:
            try:
                data += await sock.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    statuses: dict[int, str] = {}
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        data = data[9 + length :]
        if isinstance(frame, HeadersFrame):
            headers = dict(conn.decoder.decode(frame.data))
            statuses[frame.stream_id] = str(headers[":status"])
    return statuses
