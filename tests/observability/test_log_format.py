"""`--log-format json`: the sidecar's and the control plane's own lines, one JSON object each."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from sofamesh.observability.logs import JsonFormatter


def test_a_record_as_json_with_its_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "sofamesh.x", logging.ERROR, "f.py", 1, "a %s b", ("é",), sys.exc_info()
        )
    record.created, record.msecs = 1_764_700_000.5, 500.0
    line = json.loads(JsonFormatter().format(record))
    assert line.pop("exception").endswith("ValueError: boom")
    assert line == {"time": "2025-12-02T18:26:40.500Z", "level": "error", "logger": "sofamesh.x",
                    "message": "a é b"}  # fmt: skip


def run_until_ready(argv: list[str], ready: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Start `argv`, wait for its READY line, SIGTERM it, and parse every stderr line."""
    env = {
        **os.environ,
        "SOFAMESH_ADMIN_PASSWORD": "pw-for-tests",
        "SOFAMESH_STATE_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(ready), line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return [json.loads(raw) for raw in err.splitlines()]  # every line is one object


def test_the_sidecar_logs_json_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "mesh.yaml"
    out = [{"protocol": "http", "listen": "127.0.0.1:0"}]
    cfg.write_text(
        yaml.safe_dump({"app": "web", "registry": f"file://{tmp_path}/reg", "outbound": out})
    )
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--log-format", "json"]
    lines = run_until_ready(argv, "SOFAMESH READY", tmp_path)
    assert any(x["logger"] == "sofamesh.sidecar" and "ready" in x["message"] for x in lines)
    assert {x["level"] for x in lines} <= {"debug", "info", "warning", "error"}


def test_the_control_plane_logs_json_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "control.yaml"
    cfg.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "store": f"sqlite://{tmp_path}/c.db",
                                   "registry": f"file://{tmp_path}/reg"}))  # fmt: skip
    argv = [sys.executable, "-m", "sofamesh.control", "-c", str(cfg), "--log-format", "json"]
    lines = run_until_ready(argv, "SOFAMESH CONTROL READY", tmp_path)
    assert lines and all(x["logger"].startswith("sofamesh") for x in lines)
