"""Inventory load: N data planes reporting every few seconds; the control plane's CPU and RSS.

    PYTHONPATH=src .venv/bin/python benchmarks/control_inventory.py [--dataplanes 1000]
        [--interval 5] [--duration 30]

The control plane is its own process (sqlite store). The data planes are N real agents in
this process, on the control plane's backend: asyncio, then trio (`--backend`). Each
reports every `--interval` seconds and keeps a long-poll parked, so the control plane
holds 2N connections. After every agent has reported once, the control
plane's CPU (utime + stime from /proc) is measured over `--duration` seconds, with its RSS
at the end and a read of the whole inventory. Prints Markdown.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from control_common import FakeHost, spread_sources, start_control, workspace
from netutil import add_backend_arg, backends_of, cpu_seconds, rss_mib

from sofamesh.config.control_urls import ControlUrls
from sofamesh.control.agent import ControlAgent


async def run(n: int, interval: float, duration: float, tmp: Path, backend: str) -> dict[str, Any]:
    proc, url = start_control(tmp, backend, report_interval=interval, lost_after=interval * 3)
    try:
        admin, token = workspace(url)
        urls = ControlUrls.parse(url)
        spread_sources()
        agents = [
            ControlAgent(FakeHost(f"app{i}"), urls, token, "bench", state_dir=tmp / "state")
            for i in range(n)
        ]
        async with anyio.create_task_group() as tg:
            for agent in agents:
                await tg.start(agent.run)
                await anyio.sleep(interval / n)  # spread the reports over the interval
            with anyio.fail_after(60):
                for agent in agents:
                    if not agent.reports:
                        await agent.wait_reported()
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            reports0 = sum(a.reports for a in agents)
            await anyio.sleep(duration)
            cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
            reports = sum(a.reports for a in agents) - reports0
            t = time.monotonic()
            rows = await anyio.to_thread.run_sync(
                lambda: admin.call("GET", "/api/v1/workspaces/bench/sidecars")
            )
            list_ms = (time.monotonic() - t) * 1000
            result = {
                "n": n,
                "interval": interval,
                "cpu": cpu,
                "rss": rss_mib(proc.pid),
                "reports_per_s": reports / duration,
                "listed": len(rows),
                "list_ms": list_ms,
            }
            tg.cancel_scope.cancel()
    finally:
        proc.terminate()
        proc.wait()
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataplanes", type=int, default=1000)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=30.0)
    add_backend_arg(p)
    p.add_argument("--quick", action="store_true", help="20 data planes for 2 s: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.dataplanes, args.interval, args.duration = 20, 0.5, 2.0
    print(
        "| backend | data planes | report every | reports/s | control CPU (% of a core) | RSS MB"
        " | inventory read |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend in backends_of(args):
        with tempfile.TemporaryDirectory(prefix="control-inventory-") as tmp:
            fargs = (args.dataplanes, args.interval, args.duration, Path(tmp), backend)
            r = anyio.run(run, *fargs, backend=backend)
        print(
            f"| {backend} | {r['n']} | {r['interval']:g} s | {r['reports_per_s']:.0f}"
            f" | {r['cpu'] * 100:.1f} % | {r['rss']:.0f} | {r['listed']} rows in {r['list_ms']:.0f} ms |"
        )


if __name__ == "__main__":
    main()
