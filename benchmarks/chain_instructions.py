"""Instructions per call of the SDK's outbound chain, counted by callgrind.

    .venv/bin/python benchmarks/chain_instructions.py [--warm 200] [--calls 2000]
        [--chain none|full|both] [--backend asyncio|trio] [--baseline-src ../base/src]
    .venv/bin/python benchmarks/chain_instructions.py --quick     # 50 + 200 calls, full set only
    .venv/bin/python benchmarks/chain_instructions.py --python-calls  # cProfile, no valgrind

`benchmarks/chain.py` times the chain; on a shared 2-core machine its rounds swing by 10-50 %
from one run to the next, while an instruction count repeats within a few hundred per call. Each
count is two processes under `valgrind --tool=callgrind --instr-atstart=no`, with
`PYTHONHASHSEED=0` so that dict and string hashing are the same in both. Each opens the runtime
of `chain.py` (the same chain, rules and null transport), makes `--warm` calls, then switches
callgrind's counting on (`callgrind_control -i on`), makes its counted calls, and switches it off:
one process none, the other `--calls`. The difference, divided by `--calls`, is what one warm call
costs, building its `Invocation` and awaiting the chain; the switching's own cost cancels out.
With `--baseline-src` the same counts are taken with another checkout's `src/` on the path, so a
change is judged against its starting tree in one run.

`--python-calls` runs the counted phase under cProfile instead (no valgrind): the Python
functions one chain call enters, with how many times each (about 500-800 instructions a call).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from chain import FULL_RULES, SERVICE, measure, open_runtime

HERE = Path(__file__).resolve()
CHAINS = {"none": None, "full": FULL_RULES}
NAMES = {"none": "no rules", "full": "full set"}


async def calls(handler: Any, n: int) -> None:
    """`n` calls exactly as `chain.measure` makes them (each builds its `Invocation`)."""
    if n:
        await measure(handler, n)


def instrument(on: bool) -> None:
    """Callgrind counts only between these (`--instr-atstart=no`: start-up runs ~8x faster)."""
    argv = ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())]
    subprocess.run(argv, check=True, capture_output=True)


async def child(chain: str, warm: int, counted: int, profile: bool) -> None:
    """One process's calls: `warm`, then `counted` (under cProfile with `profile`, else
    counted by callgrind)."""
    from sofamesh.endpoint import Endpoint
    from sofamesh.registry.memory import MemoryHub, MemoryRegistry

    hub = MemoryHub()
    async with MemoryRegistry(hub) as registry:
        for i in range(3):
            await registry.publish(
                Endpoint(SERVICE, "127.0.0.1", 9000 + i, version=f"v{1 + i % 2}")
            )
        async with open_runtime(hub, CHAINS[chain]) as rt:
            handler = rt.outbound_chain()
            assert rt.clusters is not None
            await rt.clusters.get(SERVICE).ready.wait()
            await calls(handler, warm)
            if not profile:
                instrument(True)
                await calls(handler, counted)
                instrument(False)
                return
            with cProfile.Profile() as prof:
                await calls(handler, counted)
    print_calls(prof, counted)


def print_calls(prof: cProfile.Profile, counted: int) -> None:
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_cc, nc, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
        rows.append((nc / counted, f"{func} ({where})"))
    rows.sort(reverse=True)
    total = sum(n for n, _ in rows)
    print(f"| Python and C calls per chain call | {total:.1f} |\n|---|---|")
    for n, name in rows:
        if n >= 0.5:
            print(f"| {n:.1f} | {name} |")


def count(src: str, chain: str, warm: int, counted: int, backend: str) -> int:
    """The instructions of one child process under callgrind."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src), "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                sys.executable, str(HERE), "--child", chain, "--warm", str(warm),
                "--calls", str(counted), "--backend", backend]  # fmt: skip
        subprocess.run(argv, env=env, check=True, capture_output=True)
        lines = out.read_text(errors="replace").splitlines()
    # `summary:` is 0 when counting starts switched off; `totals:` holds the count.
    totals = [int(line.split()[1]) for line in lines if line.startswith("totals:")]
    if not totals:
        raise RuntimeError(f"no totals in callgrind's output for {chain}")
    return max(totals)


def per_call(src: str, chain: str, args: argparse.Namespace) -> float:
    base = count(src, chain, args.warm, 0, args.backend)
    full = count(src, chain, args.warm, args.calls, args.backend)
    return (full - base) / args.calls


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--chain", choices=["none", "full", "both"], default="both")
    ap.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    ap.add_argument("--baseline-src", help="another checkout's src/, counted the same way")
    ap.add_argument("--python-calls", action="store_true", help="cProfile's calls, no valgrind")
    ap.add_argument("--quick", action="store_true", help="50 calls of warm-up, 200 counted")
    ap.add_argument("--child", choices=sorted(CHAINS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None or args.python_calls:
        chain = args.child or ("full" if args.chain == "both" else args.chain)
        anyio.run(child, chain, args.warm, args.calls, args.python_calls, backend=args.backend)
        return
    if args.quick:
        args.warm, args.calls, args.chain = 50, 200, "full"
    chains = ["none", "full"] if args.chain == "both" else [args.chain]
    trees = [("this tree", str(HERE.parents[1] / "src"))]
    if args.baseline_src:
        trees.insert(0, ("baseline", args.baseline_src))
    print(f"instructions per call ({args.backend}, {args.calls} calls after {args.warm})")
    print("| chain | " + " | ".join(name for name, _ in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for chain in chains:
        figures = [per_call(src, chain, args) for _, src in trees]
        print(f"| {NAMES[chain]} | " + " | ".join(f"{f:,.0f}" for f in figures) + " |")


if __name__ == "__main__":
    main()
