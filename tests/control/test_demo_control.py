"""The demo starts a control plane; its summary's `sofamesh ctl` commands show the live mesh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def test_demo_summary_ends_with_working_ctl_commands() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "sofamesh.demo", "--phase-seconds", "1", "--keep-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert demo.stdout is not None
    try:
        lines: list[str] = []
        while not lines or "ctl top -w demo" not in lines[-1]:
            line = demo.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        out = "".join(lines)
        assert "control plane: 4 data planes reporting, 4 SYNCED" in out
        export = next(x for x in lines if x.strip().startswith("export "))
        env = dict(os.environ)
        for pair in export.split()[1:]:
            key, _, value = pair.partition("=")
            env[key] = value
        ctl = [sys.executable, "-m", "sofamesh.cli", "ctl", "-o", "json"]
        rows = json.loads(
            subprocess.run(
                [*ctl, "sidecars", "-w", "demo"], env=env, capture_output=True, check=True
            ).stdout
        )
        assert sorted(r["app"] for r in rows) == ["inventory", "inventory", "shop", "web"]
        history = json.loads(
            subprocess.run(
                [*ctl, "rules", "history", "-w", "demo"], env=env, capture_output=True, check=True
            ).stdout
        )
        assert [h["version"] for h in history] == ["v1"]
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
