"""A fresh interpreter on this checkout's src/: what a process imports at start can only be
seen in one that has not imported everything already, as the test process has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sofamesh

SRC = Path(sofamesh.__file__).resolve().parents[1]


def run_python(code: str, *args: str) -> str:
    """Run `code` with `args` in a fresh interpreter; its stdout (it must succeed)."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
