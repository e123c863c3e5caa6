"""What the `sofamesh.testing` plugin costs a test: a sidecar to ready, and an in-memory call.

    PYTHONPATH=src .venv/bin/python benchmarks/testing_fixtures.py [--sidecars 10] [--calls 2000]
    PYTHONPATH=src .venv/bin/python benchmarks/testing_fixtures.py --quick   # about a second

- sidecar start-to-ready: what the `sofamesh_sidecar` fixture spends, from spawning
  `python -m sofamesh.sidecar` (one outbound listener, admin API, rules file, a file
  registry) to its READY line, then stopping it (SIGTERM, drain, exit);
- harness: `mesh_for` opened (two runtimes on a private memory hub), and one call through the
  consumer's outbound chain and the provider's inbound chain to an ASGI app (`mesh.request`).

Prints Markdown (paste into docs/performance.md); each figure on asyncio and on trio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from sofamesh.testing import Processes, mesh_for

SERVICE = "com.example.Echo"


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (msg := await receive())["type"] != "lifespan.shutdown":
            await send({"type": msg["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def sidecar_times(n: int, backend: str) -> tuple[list[float], list[float]]:
    """Seconds from spawn to READY, and from SIGTERM to exit, for `n` sidecars in turn."""
    ready, stop = [], []
    with tempfile.TemporaryDirectory() as tmp:
        registry = f"file://{tmp}/registry?poll=0.05"
        for i in range(n):
            async with Processes(Path(tmp), backend) as procs:
                started = time.perf_counter()
                config = {"app": f"bench-{i}", "registry": registry}
                await procs.sidecar({**config, "outbound": [{"protocol": "http"}]})
                ready.append(time.perf_counter() - started)
                started = time.perf_counter()
            stop.append(time.perf_counter() - started)
    return ready, stop


async def harness_times(calls: int) -> tuple[float, list[float]]:
    """Seconds to open `mesh_for`, and per call, for `calls` calls."""
    started = time.perf_counter()
    async with mesh_for(echo, [SERVICE]) as h:
        opened = time.perf_counter() - started
        mesh = h.consumer
        assert (await mesh.request(SERVICE, "GET", "/")).status == 200
        per_call = []
        for _ in range(calls):
            t = time.perf_counter()
            await mesh.request(SERVICE, "GET", "/")
            per_call.append(time.perf_counter() - t)
    return opened, per_call


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sidecars", type=int, default=10, help="sidecars started per backend")
    p.add_argument("--calls", type=int, default=2000, help="harness calls per backend")
    p.add_argument(
        "--quick", action="store_true", help="one sidecar, 200 calls, asyncio only: about a second"
    )
    args = p.parse_args()
    backends = ["asyncio"] if args.quick else ["asyncio", "trio"]
    if args.quick:
        args.sidecars, args.calls = 1, 200
    print(f"python {sys.version.split()[0]}; {args.sidecars} sidecars, {args.calls} calls\n")
    print(
        "| backend | sidecar spawn -> READY (median, max) | SIGTERM -> exit (median) "
        "| `mesh_for` open | harness call (median, p99) |"
    )
    print("|---|---|---|---|---|")
    for backend in backends:
        ready, stop = anyio.run(sidecar_times, args.sidecars, backend, backend=backend)
        opened, calls = anyio.run(harness_times, args.calls, backend=backend)
        calls.sort()
        p99 = calls[min(len(calls) - 1, int(len(calls) * 0.99))]
        print(
            f"| {backend} | {ms(statistics.median(ready))}, {ms(max(ready))} "
            f"| {ms(statistics.median(stop))} | {ms(opened)} "
            f"| {us(statistics.median(calls))}, {us(p99)} |"
        )


if __name__ == "__main__":
    main()
