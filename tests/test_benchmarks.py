"""Every benchmark runs in its `--quick` mode, so a refactor that breaks one fails here.

Each runs as a user runs it (a subprocess from the repository root, this checkout's
`src` first on the path) and must exit 0 and print its figures: the row named below,
with a number in its first figure column.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
HELPERS = {
    "netutil.py",
    "rss_by_module.py",
    "control_common.py",
    "attack_targets.py",
    "attack_clients.py",
    "rpc_driver.py",
    "http1_steps.py",
    "opcode_count.py",
}  # shared code, not benchmarks

# benchmark -> a pattern its output must match: a figure row, with a number
FIGURES = {
    "chain.py": r"^\| full set \| [\d.]+ \|",
    "chain_instructions.py": r"^\| full set \| [\d,]+ \|",
    "hessian2.py": r"^\| a\. SOFARPC request \(SofaRequest \+ 3 args\) \| [\d,]+ \|",
    "http1_codec.py": r"^loopback: [\d,]+ req/s",
    "http_proxy.py": r"^\| sofamesh \| [\d.]+ ",
    "grpc.py": r"^\| sofamesh \| [\d.]+ ",
    "h2_codec.py": r"^\| lean \| [\d.]+ \|",
    "bolt.py": r"^\| sofamesh sidecar, asyncio \+ uvloop \| [\d,]+ ",
    "bolt_instructions.py": r"^\| sidecar, instructions per proxied call \| [\d,]+ \|",
    "http1_instructions.py": r"^\| sidecar, instructions per proxied request \| [\d,]+ \|",
    "grpc_instructions.py": r"^\| sidecar, instructions per proxied call \| [\d,]+ \|",
    "bolt_pieces.py": r"^\| HeaderPicker\.pick \(the names routing needs\) \| [\d,]+ \|",
    "dubbo.py": r"^\| sofamesh sidecar, asyncio \+ uvloop \| [\d,]+ ",
    "file_registry_idle.py": r"^\| this tree \| [\d.]+ % \|",
    "registry.py": r"^\| new consumer syncs one service, p50 / p99 \| [\d.]+ / [\d.]+ ms \|",
    "testing_fixtures.py": r"^\| asyncio \| [\d.]+ ms, ",
    "control_push.py": r"^\| asyncio \| 5 \| 2 \| 10 \| [\d.]+ \|",
    "control_inventory.py": r"^\| asyncio \| 20 \| 0\.5 s \| [\d.]+ \|",
    "control_idle.py": r"^\| cost of being connected \| -?[\d.]+ % \|",
    "mtls.py": r"^\| sofamesh, mTLS \| [\d,]+ \|",
    "intercept.py": r"^\| transparent \| keep-alive \| [\d,]+ \|",
    "observability.py": r"^\| sofamesh, tracing 100 % \| [\d,]+ \|",
    "console.py": r"^\| services page, 200 services / 50 data planes \| [\d.]+ ms \|",
    "registry_apis.py": r"^\| eureka \| [\d.]+ / [\d.]+ \| [\d.]+ / [\d.]+ \| [\d,]+ \|",
    "idle_rss.py": r"^\| sofamesh, every protocol \| [\d.]+ \|",
    "attack.py": r"^\| rapid_reset \| sofamesh \| (yes|NO) \| [\d.]+ / ",
    "soak.py": r"^\| 3 \| [\d,]+ \| [\d.]+ \| [\d.]+ \|",
    "workers.py": r"^\| sofamesh, workers 2 \| \d+ \| [\d.]+ \| [\d.]+ \| 0 \| \d+ % / \d+ % \|",
}


def test_every_benchmark_has_a_quick_run_here() -> None:
    found = {p.name for p in BENCHMARKS.glob("*.py")} - HELPERS
    assert found == set(FIGURES)


def _quick(name: str, *flags: str) -> str:
    """`name --quick` run as a user runs it; its output, once it exited 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), "--quick", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_quick_run_prints_its_figures(name: str) -> None:
    out = _quick(name)
    assert re.search(FIGURES[name], out, re.M), out[-3000:]


def test_the_bytecode_profile_of_a_grpc_call_prints_its_table() -> None:
    """`grpc_instructions.py --opcodes`: the sidecar under `opcode_count.py`, switched on
    and off by signals around the counted calls."""
    out = _quick("grpc_instructions.py", "--opcodes")
    assert re.search(r"^[\d,]+ bytecodes per call in Python functions$", out, re.M)
    assert re.search(r"^\| [\d,.]+ \| [\d.]+ \| h2/lean\.py:\d+ _receive \|$", out, re.M)


def test_the_access_log_count_logs_every_request_it_counts() -> None:
    """`http1_instructions.py --access-log`: the sidecar writes a line for each request,
    the warm-up's and the counted ones (100 + 200 with --quick)."""
    out = _quick("http1_instructions.py", "--access-log", "--no-parts")
    assert re.search(FIGURES["http1_instructions.py"], out, re.M), out[-3000:]
    assert re.search(r"^\| this tree, access log lines \| 300 \|$", out, re.M), out[-3000:]
