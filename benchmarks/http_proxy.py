"""HTTP/1.1 proxy throughput, side by side in one run: direct, sofamesh sidecar, Envoy.

    .venv/bin/python benchmarks/http_proxy.py [--duration 10] [--connections 50] [--runs 3]
    .venv/bin/python benchmarks/http_proxy.py --quick   # one 1 s round, no trio: a smoke run

Upstream: nginx answering a small 200 on 127.0.0.1. Paths compared, each with
wrk -t1 -c50 (wrk, proxy and upstream share this machine's 2 cores):

- direct: wrk -> nginx
- sofamesh: wrk -> sidecar outbound listener (Host names the service; discovery
  on the file registry; the full outbound chain) -> nginx; asyncio + uvloop
- sofamesh (trio): the same sidecar on trio
- envoy: wrk -> Envoy 1.40 --concurrency 1, one route to the same nginx

Rounds alternate the paths so that drift on a noisy machine hits each alike;
the table reports the median round per path, and the CPU the process serving
the path (the proxy; nginx for direct) spent per request over its rounds, from
/proc, which other work on the machine disturbs far less than requests/s.
Writes a Markdown table to stdout (paste into docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import netutil
from netutil import (
    ENVOY,
    add_baseline_arg,
    cpu_seconds,
    free_port,
    require_tools,
    src_env,
    start_nginx,
    stop_all,
    wait_port,
    wrk,
)

ENVOY_CONF = """
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: http1_listener
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: HTTP1
          route_config:
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
"""


def measured(path: tuple[int, int], duration: int, connections: int) -> dict[str, float]:
    """One wrk round on `path` (port, pid of its server), with that server's CPU."""
    port, pid = path
    before = cpu_seconds(pid)
    result = wrk(port, "bench", duration, connections)
    result["cpu"] = cpu_seconds(pid) - before
    return result


def start_sidecar(
    tmp: Path, registry: str, backend: str, src: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A sidecar with one outbound HTTP/1.1 listener, once it listens: (process, port)."""
    port = free_port()
    config = {"app": "bench", "registry": registry,
              "outbound": [{"protocol": "http", "listen": f"127.0.0.1:{port}"}]}  # fmt: skip
    name = f"{backend}{'-baseline' if src else ''}"
    proc = netutil.start_sidecar(tmp, name, config, backend, env=src_env(src))
    wait_port(port)
    return proc, port


def publish_upstream(registry_dir: Path, upstream: int) -> subprocess.Popen[bytes]:
    """A process that publishes nginx as service `bench` in the file registry while it runs."""
    code = (
        "import anyio\nfrom sofamesh.registry import FileRegistry\nfrom sofamesh.endpoint import Endpoint\n"
        "async def main():\n"
        f"    async with FileRegistry({str(registry_dir)!r}) as r:\n"
        f"        await r.publish(Endpoint('bench', '127.0.0.1', {upstream}))\n"
        "        print('up', flush=True)\n        await anyio.sleep_forever()\n"
        "anyio.run(main)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    return proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-trio", action="store_true")
    ap.add_argument(
        "--quick", action="store_true", help="one 1 s round per path, no warm-up, no trio"
    )
    add_baseline_arg(ap)
    args = ap.parse_args()
    if args.quick:
        args.duration, args.connections, args.runs, args.no_trio = 1, 8, 1, True
    require_tools("wrk", "nginx")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        try:
            paths = start_paths(Path(d), args, procs)
            if not args.quick:  # warm every path (connection pools, cached imports)
                for port, _ in paths.values():
                    wrk(port, "bench", 2, args.connections)
            results: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
            for _ in range(args.runs):
                for name, path in paths.items():
                    results[name].append(measured(path, args.duration, args.connections))
            report(results, args)
        finally:
            stop_all(procs)


def start_paths(
    tmp: Path, args: argparse.Namespace, procs: list[subprocess.Popen[bytes]]
) -> dict[str, tuple[int, int]]:
    """nginx, its publication, the sidecars and Envoy: (port, server's pid) of each path."""
    upstream = free_port()
    procs.append(start_nginx(tmp, port=upstream))
    nginx = nginx_worker(procs[-1].pid)
    procs.append(publish_upstream(tmp / "registry", upstream))
    paths: dict[str, tuple[int, int]] = {"direct": (upstream, nginx)}
    for backend in ("asyncio",) if args.no_trio else ("asyncio", "trio"):
        proc, port = start_sidecar(tmp, f"file://{tmp}/registry", backend)
        procs.append(proc)
        paths["sofamesh" if backend == "asyncio" else "sofamesh (trio)"] = (port, proc.pid)
    if args.baseline_src:
        proc, port = start_sidecar(tmp, f"file://{tmp}/registry", "asyncio", args.baseline_src)
        procs.append(proc)
        paths["sofamesh @ baseline"] = (port, proc.pid)
    if ENVOY.exists():
        proc, port = start_envoy(tmp, upstream)
        procs.append(proc)
        paths["envoy 1.40"] = (port, proc.pid)
    return paths


def nginx_worker(master: int) -> int:
    """The pid of the one worker of the nginx whose master is `master` (it serves)."""
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("nginx started no worker")


def start_envoy(tmp: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int]:
    port, admin = free_port(), free_port()
    conf = ENVOY_CONF.format(port=port, admin=admin, upstream=upstream)
    proc = netutil.start_envoy(tmp, "envoy", conf, base_id=77)
    wait_port(port)
    return proc, port


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.runs} rounds, median round per path;"
        f" {os.cpu_count()} cores shared by wrk, proxy and upstream\n"
    )
    print("| path | req/s | p50 ms | p99 ms | non-2xx | CPU us/req |\n|---|---|---|---|---|---|")
    for name, runs in results.items():
        best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        spread = f"{min(r['rps'] for r in runs):.0f}-{max(r['rps'] for r in runs):.0f}"
        print(
            f"| {name} | {best['rps']:.0f} ({spread}) | {best['p50']:.2f} | {best['p99']:.2f} "
            f"| {sum(r['errors'] for r in runs):.0f} | {cpu_per_request(runs):.1f} |"
        )
    if "envoy 1.40" in results:
        env, ours = results["envoy 1.40"], results["sofamesh"]
        rps = statistics.median(r["rps"] for r in ours) / statistics.median(r["rps"] for r in env)
        p99 = statistics.median(r["p99"] for r in ours) / statistics.median(r["p99"] for r in env)
        cpu = cpu_per_request(ours) / cpu_per_request(env)
        met = rps >= 1.0 and p99 <= 1.0
        print(
            f"\nsofamesh / envoy (medians over rounds): requests/s {rps:.2f} (goal >= 1.0),"
            f" p99 {p99:.2f}x (goal <= 1.0): {'met' if met else 'NOT met'};"
            f" CPU per request {cpu:.2f}x"
        )


def cpu_per_request(runs: list[dict[str, float]]) -> float:
    """Microseconds of the path's server CPU per request, over all its rounds."""
    requests = sum(r["requests"] for r in runs)
    return sum(r["cpu"] for r in runs) / requests * 1e6 if requests else float("nan")


if __name__ == "__main__":
    main()
