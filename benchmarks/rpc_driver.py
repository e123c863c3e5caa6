"""What benchmarks/bolt.py and benchmarks/dubbo.py share: their paths, rounds and table.

Each benchmark names its protocol, its provider and load generator (run as child processes
of its own script: `SCRIPT provider ...`, `SCRIPT load ...`) and its Envoy path; this module
starts the provider, a sidecar per backend and Envoy, measures rounds that alternate the
paths (the CPU each process spent per request read from /proc), and prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netutil import (
    ENVOY,
    add_baseline_arg,
    cpu_seconds,
    free_port,
    src_env,
    start_envoy,
    start_sidecar,
    stop_all,
    wait_port,
)


@dataclass(frozen=True)
class RpcBench:
    protocol: str  # the sidecar's outbound listener protocol
    script: str  # the benchmark's file: its `provider` and `load` modes run as children
    provide: Callable[[int, str], Awaitable[None]]  # (port, registry URL): serve until killed
    generate: Callable[[int, int, int, float, float], Awaitable[dict[str, Any]]]
    envoy_name: str  # the Envoy path's name in the table
    envoy_conf: Callable[[int, int, int], str | None]  # (listen, admin, upstream); None: absent
    envoy_base_id: int  # apart from every other benchmark's Envoy


def main(spec: RpcBench) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "provider", "load"])
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--registry", default="")
    ap.add_argument("--no-trio", action="store_true")
    add_baseline_arg(ap)
    ap.add_argument(
        "--quick", action="store_true", help="one 0.5 s round per path, no warm-up, no trio"
    )
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.runs, args.no_trio = 0.5, 0.1, 1, True
        args.connections, args.window = 2, 4
    if args.mode == "bench":
        bench(spec, args)
        return
    import uvloop

    if args.mode == "provider":
        uvloop.run(spec.provide(args.port, args.registry))
        return
    gen = spec.generate(args.port, args.connections, args.window, args.duration, args.warmup)
    print(json.dumps(uvloop.run(gen)), flush=True)


def measure(
    spec: RpcBench, port: int, args: argparse.Namespace, pids: list[int], duration: float
) -> dict[str, Any]:
    """One round against `port`, in a child generator process; CPU µs per request per pid."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    argv = [sys.executable, spec.script, "load", "--port", str(port), "--connections",
            str(args.connections), "--window", str(args.window), "--duration", str(duration),
            "--warmup", str(args.warmup)]  # fmt: skip
    out, _ = subprocess.Popen(argv, stdout=subprocess.PIPE).communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    spent = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    per = max(result["count"], 1) / duration  # requests/s measured; CPU over warmup too
    result["cpu_us"] = {pid: s / ((duration + args.warmup) * per) * 1e6 for pid, s in spent.items()}
    return result


def start_paths(
    spec: RpcBench, tmp: Path, args: argparse.Namespace, procs: list[subprocess.Popen[bytes]]
) -> dict[str, tuple[int, list[int]]]:
    """The provider, a sidecar per backend and Envoy: each path's port and its processes."""
    registry = f"file://{tmp}/registry?poll=0.1"
    upstream = free_port()
    argv = [sys.executable, spec.script, "provider", "--port", str(upstream), "--registry",
            registry]  # fmt: skip
    provider = subprocess.Popen(argv, stdout=subprocess.PIPE)
    procs.append(provider)
    assert provider.stdout is not None and provider.stdout.readline().strip() == b"up"
    paths: dict[str, tuple[int, list[int]]] = {"direct": (upstream, [provider.pid])}
    sidecars = [("asyncio", None)] if args.no_trio else [("asyncio", None), ("trio", None)]
    if args.baseline_src:
        sidecars.append(("asyncio", args.baseline_src))
    for backend, src in sidecars:
        name = "sofamesh sidecar" + (", trio" if backend == "trio" else ", asyncio + uvloop")
        port = free_port()
        tag = f"{backend}{'-baseline' if src else ''}"
        listener = {"protocol": spec.protocol, "listen": f"127.0.0.1:{port}"}
        config = {"app": "bench", "registry": registry, "outbound": [listener]}
        procs.append(start_sidecar(tmp, tag, config, backend, env=src_env(src)))
        paths["sofamesh @ baseline" if src else name] = (port, [provider.pid, procs[-1].pid])
    port, admin = free_port(), free_port()
    conf = spec.envoy_conf(port, admin, upstream)
    if ENVOY.exists() and conf is not None:
        procs.append(start_envoy(tmp, "envoy", conf, spec.envoy_base_id))
        paths[spec.envoy_name] = (port, [provider.pid, procs[-1].pid])
    for port, _pids in paths.values():  # the sidecars and Envoy started side by side
        wait_port(port)
    return paths


def bench(spec: RpcBench, args: argparse.Namespace) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        try:
            paths = start_paths(spec, Path(d), args, procs)
            for port, pids in paths.values() if not args.quick else ():
                measure(spec, port, args, pids, 2)  # warm every path: connections, discovery
            results: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
            for _ in range(args.runs):
                for name, (port, pids) in paths.items():
                    results[name].append(measure(spec, port, args, pids, args.duration))
            report(spec, results, args)
        finally:
            stop_all(procs)


def report(spec: RpcBench, results: dict[str, list[dict[str, Any]]], args: Any) -> None:
    print(
        f"{args.connections} connections x {args.window} in flight, echo(1 KB String), "
        f"{args.duration:g} s x {args.runs} rounds, median round per path (range over rounds); "
        f"{os.cpu_count()} cores shared by generator, proxy and provider\n"
    )
    print("| path | req/s | p50 ms | p99 ms | errors | CPU µs/request (provider, proxy) |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        mid = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        spread = f"{min(r['rps'] for r in runs):,.0f}-{max(r['rps'] for r in runs):,.0f}"
        cpu = ", ".join(f"{v:.0f}" for v in mid["cpu_us"].values())
        print(
            f"| {name} | {mid['rps']:,.0f} ({spread}) | {mid['p50']:.2f} | {mid['p99']:.2f} "
            f"| {sum(r['errors'] for r in runs)} | {cpu} |"
        )
    envoy = results.get(spec.envoy_name, [])
    ours = results["sofamesh sidecar, asyncio + uvloop"]
    if envoy:
        med = statistics.median
        ratio = med(r["rps"] for r in ours) / med(r["rps"] for r in envoy)
        p99 = med(r["p99"] for r in ours) / max(med(r["p99"] for r in envoy), 1e-9)
        rounds = ", ".join(f"{o['rps'] / e['rps']:.2f}" for o, e in zip(ours, envoy, strict=True))
        print(f"\nsofamesh sidecar / {spec.envoy_name.replace(' 1.40', '')} requests/s: "
              f"{ratio:.2f} (per round: {rounds}); p99 ratio {p99:.2f}")  # fmt: skip


async def drive(
    load: Callable[[list[float], dict[str, Any]], asyncio.Protocol],
    port: int,
    connections: int,
    duration: float,
    warmup: float,
) -> dict[str, Any]:
    """The load generator's run: `connections` protocols from `load(record, state)` (each
    keeps its window in flight, appends latencies to `record` while `state["measuring"]`,
    counts `state["errors"]`, stops sending once `state["stopping"]`); req/s, p50, p99 ms."""
    loop = asyncio.get_running_loop()
    record: list[float] = []
    state: dict[str, Any] = {"measuring": False, "stopping": False, "errors": 0}
    conns = [
        await loop.create_connection(lambda: load(record, state), "127.0.0.1", port)
        for _ in range(connections)
    ]
    await asyncio.sleep(warmup)
    state["measuring"] = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    state["measuring"] = False
    elapsed = time.perf_counter() - started
    state["stopping"] = True
    count = len(record)
    record.sort()
    for transport, _ in conns:
        transport.close()
    return {
        "rps": count / elapsed,
        "p50": record[count // 2] * 1000 if count else 0.0,
        "p99": record[int(count * 0.99)] * 1000 if count else 0.0,
        "errors": state["errors"],
        "count": count,
    }
