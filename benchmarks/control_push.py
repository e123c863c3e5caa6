"""Push latency: a rules change reaching N connected data planes, applied and acked by all.

    PYTHONPATH=src .venv/bin/python benchmarks/control_push.py [--dataplanes 50] [--rounds 20]

The control plane is its own process (sqlite store). The data planes are N real agents
(`sofamesh.control.agent.ControlAgent`, each with its own connections, long-poll and
`Governance`) in this process; both on asyncio, then both on trio (`--backend`). Each
round applies a new document through the API and times, per data plane, from just before
the apply request to the moment its ack has been answered (the document validated, put in
force, persisted, acked). Prints Markdown (paste into docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from control_common import FakeHost, start_control, workspace
from netutil import add_backend_arg, backends_of

from sofamesh.config.control_urls import ControlUrls
from sofamesh.control.agent import ControlAgent


class Acks:
    """When each data plane's ack of each version was answered; `all_in` fires at N."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.times: dict[str, list[float]] = {}
        self.all_in: dict[str, anyio.Event] = {}

    def record(self, version: str) -> None:
        times = self.times.setdefault(version, [])
        times.append(time.monotonic())
        if len(times) == self.n:
            self.event(version).set()

    def event(self, version: str) -> anyio.Event:
        return self.all_in.setdefault(version, anyio.Event())


class TimedAgent(ControlAgent):
    def __init__(self, *args: Any, acks: Acks, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.acks = acks

    async def _apply(self, version: str, document: Any) -> None:
        await super()._apply(version, document)
        self.acks.record(version)


async def run(n: int, rounds: int, tmp: Path, backend: str) -> dict[str, Any]:
    proc, url = start_control(tmp, backend, report_interval=5.0)
    try:
        admin, token = workspace(url)
        acks = Acks(n)
        urls = ControlUrls.parse(url)
        async with anyio.create_task_group() as tg:
            for i in range(n):
                agent = TimedAgent(
                    FakeHost(f"app{i}"), urls, token, "bench", state_dir=tmp / "state", acks=acks
                )
                await tg.start(agent.run)
            latencies = await _rounds(admin, acks, rounds)
            tg.cancel_scope.cancel()
    finally:
        proc.terminate()
        proc.wait()
    return {"n": n, "rounds": rounds, "ms": latencies}


async def _rounds(admin: Any, acks: Acks, rounds: int) -> list[float]:
    latencies: list[float] = []
    for r in range(rounds + 1):  # round 0 warms up: every agent is watching afterwards
        doc = {"rate_limits": [{"service": "shared-svc", "count": 100 + r}]}
        await anyio.sleep(0.3)  # let every agent park its next watch
        t0 = time.monotonic()
        entry = await anyio.to_thread.run_sync(
            lambda doc=doc: admin.call("POST", "/api/v1/workspaces/bench/rules", {"document": doc})
        )
        with anyio.fail_after(30):
            await acks.event(entry["version"]).wait()
        if r:
            latencies += [(t - t0) * 1000 for t in acks.times[entry["version"]]]
    return latencies


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataplanes", type=int, default=50)
    p.add_argument("--rounds", type=int, default=20)
    add_backend_arg(p)
    p.add_argument("--quick", action="store_true", help="5 data planes, 2 pushes: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.dataplanes, args.rounds = 5, 2
    print("| backend | data planes | pushes | acks | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for backend in backends_of(args):
        with tempfile.TemporaryDirectory(prefix="control-push-") as tmp:
            result = anyio.run(
                run, args.dataplanes, args.rounds, Path(tmp), backend, backend=backend
            )
        ms = sorted(result["ms"])
        q = statistics.quantiles(ms, n=100)
        print(
            f"| {backend} | {result['n']} | {result['rounds']} | {len(ms)} | {q[49]:.1f}"
            f" | {q[98]:.1f} | {ms[-1]:.1f} |"
        )


if __name__ == "__main__":
    main()
