"""HTTP/1.1 proxy throughput with 1 and 2 workers: sofamesh `workers: N` vs Envoy `--concurrency N`.

    .venv/bin/python benchmarks/workers.py [--duration 10] [--connections 50] [--runs 3]
    .venv/bin/python benchmarks/workers.py --quick   # one 1 s round: a smoke run

Upstream: nginx (one worker) answering a small 200 on 127.0.0.1. Paths, each driven by
wrk -t1 -c50 on the outbound listener (Host names the service; discovery on the file
registry; the full outbound chain; asyncio + uvloop):

- sofamesh, workers 1: one process, as without the key
- sofamesh, workers 2: a main process and two workers accepting on the same socket
- envoy --concurrency 1 and 2: Envoy 1.40 with one route to the same nginx

wrk, nginx and the proxy share this machine's cores (2 here): a second worker can only
help as far as a core is left over. The `split` column is how the requests of the last
round were spread over the workers (the main process's admin API counts each one's); the
proxy's CPU per request and the cores it got are read from /proc (its process and children).
Rounds alternate the paths; the table reports the median round per path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import netutil
from http_proxy import ENVOY_CONF, publish_upstream
from netutil import (
    ENVOY,
    free_port,
    require_tools,
    start_nginx,
    stop_all,
    wait_port,
    wrk,
    wrk_args,
)


def start_sidecar(
    tmp: Path, registry: str, workers: int
) -> tuple[subprocess.Popen[bytes], int, int]:
    """A sidecar with `workers`; its process, outbound port and admin port."""
    port, admin = free_port(), free_port()
    cfg = tmp / f"sidecar-{workers}.json"
    config = {
        "app": f"bench{workers}",
        "registry": registry,
        "admin": f"127.0.0.1:{admin}",
        "upgrade_socket": str(tmp / f"upgrade-{workers}.sock"),
        "workers": workers,
        "outbound": [{"protocol": "http", "listen": f"127.0.0.1:{port}"}],
    }
    cfg.write_text(json.dumps(config))
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--log-level", "WARNING"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None and b"READY" in proc.stdout.readline()
    return proc, port, admin


def start_envoy(tmp: Path, upstream: int, concurrency: int) -> tuple[subprocess.Popen[bytes], int]:
    port, admin = free_port(), free_port()
    conf = ENVOY_CONF.format(port=port, admin=admin, upstream=upstream)
    proc = netutil.start_envoy(tmp, f"envoy-{concurrency}", conf, 80 + concurrency, concurrency)
    wait_port(port)
    return proc, port


def split(admin: int) -> str:
    """Each worker's share of the calls so far, from the admin API's `/stats`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats") as resp:
        rows = json.load(resp).get("workers")
    if not rows:
        return "-"
    total = sum(r["rq_total"] for r in rows) or 1
    return " / ".join(f"{100 * r['rq_total'] / total:.0f} %" for r in rows)


def reset(admin: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{admin}/reset_counters",
        method="POST",
        data=b"{}",
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(req).close()


Path_ = tuple[int, int | None, int]  # the proxy's port, its admin port (sofamesh), its pid


def cpu_seconds(pid: int) -> float:
    """User and system CPU of `pid` (all its threads) and of its children (the workers)."""
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    total = 0.0
    for each in [pid, *map(int, kids.split())]:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measured(path: Path_, duration: int, connections: int) -> dict[str, float]:
    """One wrk round, with the proxy's CPU per request and the cores it got."""
    port, _admin, pid = path
    before, began = cpu_seconds(pid), time.monotonic()
    result = wrk(port, "bench", duration, connections)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - began
    requests = result["rps"] * elapsed
    return {**result, "cpu_us": 1e6 * used / max(requests, 1.0), "cores": used / elapsed}


def start_paths(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> dict[str, Path_]:
    """nginx, its publication, the sidecars and the Envoys: each path's proxy."""
    upstream = free_port()
    procs.append(start_nginx(tmp, port=upstream))
    procs.append(publish_upstream(tmp / "registry", upstream))
    paths: dict[str, Path_] = {}
    for workers in (1, 2):
        proc, port, admin = start_sidecar(tmp, f"file://{tmp}/registry", workers)
        procs.append(proc)
        paths[f"sofamesh, workers {workers}"] = (port, admin, proc.pid)
    if ENVOY.exists():
        for concurrency in (1, 2):
            proc, port = start_envoy(tmp, upstream, concurrency)
            procs.append(proc)
            paths[f"envoy --concurrency {concurrency}"] = (port, None, proc.pid)
    return paths


def main() -> None:
    args = wrk_args(argparse.ArgumentParser())
    require_tools("wrk", "nginx")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        try:
            paths = start_paths(Path(d), procs)
            if not args.quick:  # warm every path (connection pools, cached imports)
                for port, _admin, _pid in paths.values():
                    wrk(port, "bench", 2, args.connections)
            results: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
            splits: dict[str, str] = {}
            for _ in range(args.runs):
                for name, path in paths.items():
                    admin = path[1]
                    if admin is not None:
                        reset(admin)
                    results[name].append(measured(path, args.duration, args.connections))
                    splits[name] = split(admin) if admin is not None else "-"
            report(results, splits, args)
        finally:
            stop_all(procs)


def report(
    results: dict[str, list[dict[str, float]]], splits: dict[str, str], args: argparse.Namespace
) -> None:
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.runs} rounds, median round per"
        f" path; {os.cpu_count()} cores shared by wrk, nginx and the proxy\n"
    )
    print(
        "| path | req/s | p50 ms | p99 ms | non-2xx | split | proxy CPU us/req | cores used |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for name, runs in results.items():
        best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        print(
            f"| {name} | {best['rps']:.0f} | {best['p50']:.2f} | {best['p99']:.2f} "
            f"| {sum(r['errors'] for r in runs):.0f} | {splits[name]} | {best['cpu_us']:.0f} "
            f"| {best['cores']:.2f} |"
        )


if __name__ == "__main__":
    main()
