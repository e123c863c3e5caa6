"""scripts/fuzz.py runs every codec (and every JSON API) in its `--quick` mode: no crash.

The long runs (a million inputs per codec) are recorded in docs/reliability.md; this
keeps the script working and every codec in it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODECS = ["http1 fast path", "http1 h11", "h2 + guard", "h2 lean = h2", "grpc framing",
          "bolt + sofarpc", "hessian2", "dubbo", "dns", "eureka api", "consul api", "nacos api",
          "admission review"]  # fmt: skip


def test_quick_fuzz_reaches_every_codec_without_a_crash() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = dict(re.findall(r"^\| ([^|]+?) \| 2,000 \| ([\d,]+) \| 0 \| 0 \|", proc.stdout, re.M))
    assert sorted(rows) == sorted(CODECS), proc.stdout
    assert all(int(n.replace(",", "")) > 0 for n in rows.values())  # some inputs get through
