"""`python -m sofamesh.control` as a process: bad config, READY line, admin bootstrap, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

CONTROL = [sys.executable, "-m", "sofamesh.control"]


def test_bad_config_exits_2_naming_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "control.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"listen": "nowhere", "registry": "zk://x", "store": "mysql://db", "colour": "red"}
        )
    )
    proc = subprocess.run([*CONTROL, "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    for path in ("listen:", "registry:", "store:", "colour:"):
        assert f"  - {path}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def _start(cfg: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [*CONTROL, "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("SOFAMESH CONTROL READY "), line
    return proc, json.loads(line.split("READY ", 1)[1])


def test_ready_line_generated_password_once_and_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "control.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "store": f"sqlite://{tmp_path}/state/control.db",
                "registry": f"file://{tmp_path}/reg",
            }
        )
    )
    env = {"SOFAMESH_ADMIN_PASSWORD": ""}
    for attempt in range(2):
        proc, ready = _start(cfg, env)
        host, _, port = ready["listen"].rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        # The generated password is printed on the first start only.
        assert ("generated admin password" in err) == (attempt == 0), err
