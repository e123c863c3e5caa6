"""The CPU a `file://` registry costs while nothing changes: one process publishing an
endpoint (renewed every lease / 3) and following its service, idle.

    PYTHONPATH=src .venv/bin/python benchmarks/file_registry_idle.py [--duration 20] \\
        [--backend both] [--baseline-src /tmp/base/src]

Each run is a fresh process (this checkout's src/, or `--baseline-src`'s), on asyncio or
trio (`--backend`): a publisher and a watcher on one directory, the first snapshot seen,
1 s to settle, then its CPU (getrusage) over `--duration` seconds. Prints Markdown.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from netutil import add_backend_arg, add_baseline_arg, backends_of, src_env

RUN = """
import resource, sys, tempfile, time
import anyio
from sofamesh.endpoint import Endpoint
from sofamesh.registry import FileRegistry

def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as root:
        async with FileRegistry(root) as pub, FileRegistry(root) as sub:
            await pub.publish(Endpoint("svc", "127.0.0.1", 8080))
            async with sub.watch("svc") as snapshots:
                await anext(snapshots)
                await anyio.sleep(1.0)  # past the first scans
                c0, t0 = cpu(), time.monotonic()
                await anyio.sleep(seconds)
                print((cpu() - c0) / (time.monotonic() - t0))

anyio.run(main, float(sys.argv[1]), backend=sys.argv[2])
"""


def measure(seconds: float, backend: str, src: str | None) -> float:
    argv = [sys.executable, "-c", RUN, str(seconds), backend]
    out = subprocess.run(argv, env=src_env(src), capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=20.0)
    add_backend_arg(p)
    add_baseline_arg(p)
    p.add_argument("--quick", action="store_true", help="1 s per run: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.duration = 1.0
    backends = backends_of(args)
    trees = [("this tree", None), *([("baseline", args.baseline_src)] if args.baseline_src else [])]
    print(f"| file registry, idle, {args.duration:g} s | "
          + " | ".join(f"CPU (% of a core), {b}" for b in backends) + " |")  # fmt: skip
    print("|---|" + "---|" * len(backends))
    for name, src in trees:
        shares = [measure(args.duration, b, src) * 100 for b in backends]
        print(f"| {name} | " + " | ".join(f"{s:.2f} %" for s in shares) + " |")


if __name__ == "__main__":
    main()
