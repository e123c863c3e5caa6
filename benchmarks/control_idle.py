"""A data plane's cost of being connected: an idle sidecar's CPU with and without `control:`.

    PYTHONPATH=src .venv/bin/python benchmarks/control_idle.py [--duration 30] [--interval 5]
    PYTHONPATH=src .venv/bin/python benchmarks/control_idle.py --backend both --baseline-src /tmp/base/src

Two sidecars (one inbound listener publishing a service on a file registry, an admin API,
no traffic) run side by side for `--duration` seconds: one with `control:` (reporting every
`--interval` seconds and holding a long-poll to a control-plane process), one without.
Their CPU (utime + stime from /proc) over the same window is the cost; the sidecars and the
control plane on asyncio (uvloop), then on trio (`--backend`). With `--baseline-src DIR` two
more sidecars run from that checkout's src/ beside them (before and after in one run). Prints
Markdown.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from control_common import start_control, workspace
from netutil import add_backend_arg, add_baseline_arg, backends_of, cpu_seconds, free_port, src_env

BASELINE = " @ baseline"


def sidecar(
    tmp: Path, name: str, extra: dict[str, Any], backend: str, src: str | None = None
) -> subprocess.Popen[bytes]:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "app": name,
                "registry": f"file://{tmp}/reg",
                "admin": "127.0.0.1:0",
                "inbound": [
                    {
                        "protocol": "http",
                        "listen": "127.0.0.1:0",
                        "upstream": f"127.0.0.1:{free_port()}",
                        "services": [f"{name}-svc"],
                    }
                ],
                **extra,
            }
        )
    )
    env = {**(src_env(src) or os.environ), "SOFAMESH_STATE_DIR": str(tmp / "state")}
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--log-level", "WARNING",
            "--backend", backend]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)


def wait_ready(name: str, proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    if "READY" not in proc.stdout.readline().decode():
        raise RuntimeError(f"sidecar {name} did not start")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--interval", type=float, default=5.0)
    add_backend_arg(p)
    add_baseline_arg(p)
    p.add_argument("--quick", action="store_true", help="1 s, a report every 0.5 s: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.duration, args.interval = 1.0, 0.5
    backends = backends_of(args)
    cpu = {backend: measure(args, backend) for backend in backends}
    print(
        f"| idle sidecar ({args.duration:g} s, reports every {args.interval:g} s) | "
        + " | ".join(f"CPU (% of a core), {b}" for b in backends)
        + " |"
    )
    print("|---|" + "---|" * len(backends))
    for name in cpu[backends[0]]:
        print(f"| {name} | " + " | ".join(f"{cpu[b][name] * 100:.2f} %" for b in backends) + " |")
    for tree in ("", BASELINE) if args.baseline_src else ("",):
        costs = [
            (cpu[b][f"with control{tree}"] - cpu[b][f"without control{tree}"]) * 100
            for b in backends
        ]
        row = f"| cost of being connected{tree} | "
        print(row + " | ".join(f"{c:.2f} %" for c in costs) + " |")


def measure(args: argparse.Namespace, backend: str) -> dict[str, float]:
    """The CPU share of two idle sidecars and the control plane, all on `backend`."""
    with tempfile.TemporaryDirectory(prefix="control-idle-") as tmp_name:
        tmp = Path(tmp_name)
        control, url = start_control(tmp, backend, report_interval=args.interval)
        _admin, token = workspace(url)
        keys = {"control": url, "control_token": token, "workspace": "bench"}
        procs = {  # started side by side
            "without control": sidecar(tmp, "plain", {}, backend),
            "with control": sidecar(tmp, "joined", keys, backend),
        }
        if args.baseline_src:
            src = args.baseline_src
            procs[f"without control{BASELINE}"] = sidecar(tmp, "plain-base", {}, backend, src)
            procs[f"with control{BASELINE}"] = sidecar(tmp, "joined-base", keys, backend, src)
        try:
            for name, proc in procs.items():
                wait_ready(name, proc)
            time.sleep(0.5 if args.quick else 2.0)  # past start-up work
            before = {k: cpu_seconds(p.pid) for k, p in procs.items()}
            t0 = time.monotonic()
            time.sleep(args.duration)
            elapsed = time.monotonic() - t0
            return {k: (cpu_seconds(p.pid) - before[k]) / elapsed for k, p in procs.items()}
        finally:
            for proc in [*procs.values(), control]:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
