"""The README's first command: the demo mesh runs every phase and exits 0 by itself."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_every_phase_and_exits_0() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sofamesh.demo", "--phase-seconds", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for caller in ("shop (SDK)", "web (plain -> sidecar)"):
        for service in ("com.example.Orders", "com.example.Inventory"):
            assert f"{caller:<24} -> {service}" in out
    assert "SIGKILL inventory-2's app" in out
    assert "steady ok: True   ejection seen, no failed calls: True   recovered: True" in out
