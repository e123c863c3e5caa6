"""Access logs: Envoy's format language and JSON, parsed back field by field, through a sidecar."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import ConfigError, load_config
from sofamesh.endpoint import Endpoint
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.observability.access_log import (
    DEFAULT_FORMAT,
    FormatError,
    Record,
    compile_json,
    compile_text,
)
from sofamesh.observability.log_sink import LogSink
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
# Envoy's default format, one group per field, and the trace id sofamesh adds.
DEFAULT_LINE = re.compile(
    r'\[(?P<start>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" '
    r"(?P<code>\S+) (?P<flags>\S+) (?P<rx>\S+) (?P<tx>\S+) (?P<duration>\S+) (?P<svc_time>\S+) "
    r'"(?P<xff>[^"]*)" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" '
    r'"(?P<upstream>[^"]*)" "(?P<trace>[^"]*)"\n'
)


def record(result: Result | None = None, **headers: str) -> Record:
    req = HttpRequest("POST", "/orders?id=1", [], b"12345")
    hs = Headers([("host", "orders"), *((k.replace("_", "-"), v) for k, v in headers.items())])
    inv = Invocation("http", "orders", "/orders", hs, caller="shop", payload=req)
    inv.endpoint = Endpoint("orders", "10.0.0.7", 8080)
    if result is None:
        result = Result(
            Status.OK,
            201,
            payload=HttpResponse(201, [(b"x-envoy-upstream-service-time", b"3")], b"ab"),
        )
    return Record(inv, result, 1_764_700_000.125, 42)


def test_default_format_field_by_field() -> None:
    rec = record(
        user_agent="curl/8", x_request_id="r-1", traceparent=f"00-{TRACE}-00f067aa0ba902b7-01"
    )
    m = DEFAULT_LINE.fullmatch(compile_text(DEFAULT_FORMAT)(rec))
    assert m is not None
    assert m.groupdict() == {
        "start": "2025-12-02T18:26:40.125Z",
        "method": "POST", "path": "/orders?id=1", "protocol": "HTTP/1.1",
        "code": "201", "flags": "-", "rx": "5", "tx": "2", "duration": "42", "svc_time": "3",
        "xff": "-", "ua": "curl/8", "rid": "r-1", "authority": "orders",
        "upstream": "10.0.0.7:8080", "trace": TRACE,
    }  # fmt: skip


def test_mesh_made_failure_gets_envoys_code_and_flag() -> None:
    rec = record(Result.failure(Status.NO_ENDPOINT, "no healthy endpoint for orders"))
    rec.inv.endpoint = None
    m = DEFAULT_LINE.fullmatch(compile_text(DEFAULT_FORMAT)(rec))
    assert m is not None
    assert (m["code"], m["flags"], m["upstream"], m["trace"]) == ("503", "UH", "-", "-")


def test_custom_format_alternatives_truncation_and_json() -> None:
    fmt = "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):7% %REQ(:AUTHORITY)% %CALLER% %RESPONSE_CODE_DETAILS%"
    assert (
        compile_text(fmt)(record(x_envoy_original_path="/original/path")) == "/origin orders shop -"
    )
    fields = {"code": "%RESPONSE_CODE%", "method": "%REQ(:METHOD)%", "ua": "%REQ(USER-AGENT)%",
              "up": "%UPSTREAM_HOST%", "dur": "%DURATION%"}  # fmt: skip
    line = compile_json(fields)(record())
    assert json.loads(line) == {
        "code": 201,
        "method": "POST",
        "ua": None,
        "up": "10.0.0.7:8080",
        "dur": 42,
    }


@pytest.mark.parametrize("fmt", ["%NOT_AN_OPERATOR%", "%REQ%", "%DURATION(x)%"])
def test_unknown_operators_are_refused(fmt: str) -> None:
    with pytest.raises(FormatError, match="unknown operator"):
        compile_text(fmt)


def test_a_bad_format_fails_the_sidecars_start_naming_the_listener() -> None:
    lc = {"protocol": "http", "listen": "127.0.0.1:0", "access_log": {"format": "%NOPE%"}}
    with pytest.raises(ConfigError, match=r"outbound\[0\]\.access_log: unknown operator %NOPE%"):
        Sidecar(load_config({"app": "a", "registry": "memory://", "outbound": [lc]}, env={}))


async def test_a_file_rotated_away_or_reopened_gets_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = LogSink(str(path), flush_interval=3600, buffer_bytes=1 << 16)
    sink.write("one\n")
    await sink.flush()
    path.rename(tmp_path / "access.log.1")  # logrotate's move
    sink.write("two\n")
    await sink.flush()
    assert (tmp_path / "access.log.1").read_text() == "one\n"
    assert path.read_text() == "two\n"
    (tmp_path / "access.log").rename(tmp_path / "access.log.2")
    path.write_text("")  # a new file already there (copytruncate's cousin): SIGHUP says reopen
    sink.reopen()
    sink.write("three\n")
    await sink.aclose()
    assert path.read_text() == "three\n"
    assert sink.written == 3


async def upstream(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        head = await stream.receive()
        status = b"500 Oops" if b"/fail" in head else b"200 OK"
        await stream.send(b"HTTP/1.1 " + status + b"\r\ncontent-length: 5\r\n\r\nhello")


async def test_a_sidecar_logs_each_call_and_samples_only_successes(tmp_path: Path) -> None:
    path = tmp_path / "in.log"
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    json_log = {"path": str(path), "success_sample": 0.0, "flush_interval": 3600,
                "json": {"path": "%REQ(:PATH)%", "code": "%RESPONSE_CODE%", "trace": "%TRACE_ID%",
                         "caller": "%CALLER%"}}  # fmt: skip
    inbound: dict[str, Any] = {
        "protocol": "http", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{port}",
        "services": ["web"], "access_log": json_log,
    }  # fmt: skip
    cfg = {"app": "web", "registry": "memory://", "admin": "127.0.0.1:0", "inbound": [inbound]}
    car = Sidecar(load_config(cfg, env={}))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, upstream)
        await tg.start(car.run)
        url = f"http://{car.bound['inbound[0]']}"
        headers = {
            "host": "web",
            "x-sofamesh-caller": "shop",
            "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
        }
        async with httpx.AsyncClient() as client:
            for target in ("/ok", "/fail", "/ok"):
                await client.get(url + target, headers=headers)
            stats = (await client.get(f"http://{car.bound['admin']}/stats")).json()
        assert not path.exists() or path.read_text() == ""  # buffered: nothing written per line
        assert stats["access_logs"] == {"inbound[0]": {"written": 0, "dropped": 0}}
        car.stop()
        await car.wait_stopped()
        tg.cancel_scope.cancel()
    assert car.access_logs["inbound[0]"].sink.written == 1
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"path": "/fail", "code": 500, "trace": TRACE, "caller": "shop"}]


def test_check_validates_formats_without_starting(tmp_path: Path) -> None:
    import subprocess
    import sys

    def check(fmt: str) -> subprocess.CompletedProcess[str]:
        lc = {"protocol": "http", "listen": "127.0.0.1:0", "access_log": {"format": fmt}}
        cfg = tmp_path / "mesh.json"
        cfg.write_text(json.dumps({"app": "a", "registry": "memory://", "outbound": [lc]}))
        argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--check"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    bad = check("%DURATION% %NOPE%")
    assert bad.returncode == 2 and "outbound[0].access_log: unknown operator %NOPE%" in bad.stderr
    good = check("%DURATION% %REQ(:PATH)%")
    assert good.returncode == 0, good.stderr


async def test_a_stuck_disk_drops_lines_past_four_buffers_and_counts_them(tmp_path: Path) -> None:
    sink = LogSink(str(tmp_path / "a.log"), flush_interval=3600, buffer_bytes=10)
    for _ in range(10):
        sink.write("0123456789\n")  # nothing flushes: the writer task is not running
    assert sink.dropped == 6  # 11 bytes each: four lines are 44 bytes, past the 40 allowed
    await sink.aclose()
    assert (sink.written, len((tmp_path / "a.log").read_text().splitlines())) == (4, 4)


async def test_an_idle_sink_sleeps_until_a_line_comes(tmp_path: Path) -> None:
    """With nothing to write the sink's task waits for a line, not for its interval: at an
    interval of ~0 a task that woke by the clock would never stop flushing. A line that
    fills the buffer is written at once."""
    path = tmp_path / "a.log"
    sink = LogSink(str(path), flush_interval=1e-9, buffer_bytes=1)
    flushes = 0
    flush = sink.flush

    async def counted() -> None:
        nonlocal flushes
        flushes += 1
        await flush()

    sink.flush = counted  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        await tg.start(sink.run)
        with anyio.fail_after(10):
            await anyio.wait_all_tasks_blocked()  # the task asleep, not looping on its clock
        assert flushes == 0
        sink.write("one\n")
        with anyio.fail_after(10):
            await anyio.wait_all_tasks_blocked()  # flushing it, in its thread
        assert flushes == 1
        tg.cancel_scope.cancel()  # the write in its thread finishes first
    assert (sink.written, path.read_text()) == (1, "one\n")
    await sink.aclose()
