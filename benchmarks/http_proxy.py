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
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netutil import add_baseline_arg, free_port, src_env, wait_port

ROOT = Path(__file__).resolve().parents[1]
ENVOY = ROOT / ".venv-envoy" / "bin" / "envoy"

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{ return 200 "hello from upstream\\n"; }}
  }}
}}
"""

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


def wrk(port: int, host: str, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Host: {host}",
            f"http://127.0.0.1:{port}/",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = re.search(r"(\d+) requests in", out)
    return {
        "requests": float(requests.group(1)) if requests else 0.0,
        "rps": rps,
        "p50": to_ms(lat["50"]),
        "p99": to_ms(lat["99"]),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def to_ms(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    assert m, v
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    port = free_port()
    cfg = tmp / f"sidecar-{backend}{'-baseline' if src else ''}.json"
    cfg.write_text(
        json.dumps(
            {
                "app": "bench",
                "registry": registry,
                "outbound": [{"protocol": "http", "listen": f"127.0.0.1:{port}"}],
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sofamesh.sidecar",
            "-c",
            str(cfg),
            "--backend",
            backend,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        env=src_env(src),
    )
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
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install -y {tool}")
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
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, port=upstream))
    procs.append(
        subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf")], stderr=subprocess.DEVNULL)
    )
    wait_port(upstream)
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
    (tmp / "envoy.yaml").write_text(ENVOY_CONF.format(port=port, admin=admin, upstream=upstream))
    argv = [str(ENVOY), "-c", str(tmp / "envoy.yaml"), "--concurrency", "1", "--base-id", "77",
            "--log-level", "error"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


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
