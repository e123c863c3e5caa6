"""Unary gRPC (and h2c HTTP) through one proxy, side by side in one run: sofamesh vs Envoy.

    .venv/bin/python benchmarks/grpc.py [--duration 10] [--clients 10] [--streams 10] [--runs 3]
                                        [--upstream grpcio|nginx]
    .venv/bin/python benchmarks/grpc.py --quick   # one 1 s round, nginx upstream, no trio

The load client is h2load (nghttp2) sending helloworld's SayHello as a gRPC
request (`content-type: application/grpc`, `te: trailers`, one framed
HelloRequest): -c clients x -m concurrent streams each, one thread. Every path
is first checked with a real grpcio client (status OK, the right reply).

Upstreams (same for every path):
- `grpcio` (default): the peers' grpc.aio Greeter server, what an app would run;
- `nginx`: nginx answering SayHello from a static file over h2c with trailers
  (about 45k req/s alone), so that the proxies, not the server, are the limit.

Paths:
- direct: h2load -> upstream
- sofamesh: h2load -> sidecar outbound gRPC listener (service from :path,
  discovery on the file registry, the full outbound chain) -> upstream; asyncio + uvloop
- sofamesh (trio): the same sidecar on trio
- envoy 1.40: --concurrency 1, the peers' envoy-h2c.yaml routes, same upstream
- h2c rows (`--h2c`): plain HTTP GET over h2c through the sidecar's gRPC/h2
  listener and through Envoy's, to nginx (HTTP/1.1 upstream)

Rounds alternate the paths; the table reports the median round per path
(p50/p99 from h2load's per-request log) and the proxy's CPU per request
(utime + stime from /proc over the round, warm-up included: a steadier
measure than requests/s on a shared machine). Paste it into docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import netutil
from netutil import ENVOY, add_baseline_arg, free_port, require_tools, src_env, stop_all, wait_port

ROOT = Path(__file__).resolve().parents[1]
# This file is named grpc.py: keep its folder off the path, or `import grpc` finds it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
PEERS = ROOT.parent / "shared" / "peers" / "infra"
SERVICE = "helloworld.Greeter"
TICKS = os.sysconf("SC_CLK_TCK")
PROXY_PIDS: dict[int, int] = {}  # a proxy's port -> its process, for its CPU per request
PATH = "/helloworld.Greeter/SayHello"

# nginx's gRPC server block, beside netutil's plain HTTP one (`start_nginx`).
GRPC_SERVER = """
  server {{
    listen 127.0.0.1:{grpc_port} http2;
    http2_max_requests 100000000;
    keepalive_requests 100000000;
    root {dir}/www;
    location / {{
      default_type application/grpc;
      error_page 405 =200 $uri;
      add_trailer grpc-status 0 always;
    }}
  }}"""


def generate_stubs(tmp: Path) -> Path:
    gen = tmp / "gen"
    gen.mkdir()
    shutil.copy(PEERS / "grpc" / "helloworld.proto", tmp / "helloworld.proto")
    shutil.copy(PEERS / "grpc" / "grpcio_server.py", tmp / "grpcio_server.py")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp}",
            f"--python_out={gen}",
            f"--grpc_python_out={gen}",
            "helloworld.proto",
        ],
        check=True,
    )
    sys.path.insert(0, str(gen))
    import helloworld_pb2  # type: ignore[import-not-found]

    body = helloworld_pb2.HelloRequest(name="world").SerializeToString()
    (tmp / "req.bin").write_bytes(struct.pack(">BI", 0, len(body)) + body)
    reply = helloworld_pb2.HelloReply(message="Hello world from nginx").SerializeToString()
    www = tmp / "www" / "helloworld.Greeter"
    www.mkdir(parents=True)
    (www / "SayHello").write_bytes(struct.pack(">BI", 0, len(reply)) + reply)
    return gen


def check_grpc(port: int) -> str:
    """One real gRPC call: the reply's message, or an exception."""
    import grpc
    import helloworld_pb2
    import helloworld_pb2_grpc  # type: ignore[import-not-found]

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = helloworld_pb2_grpc.GreeterStub(ch)
        return str(stub.SayHello(helloworld_pb2.HelloRequest(name="world"), timeout=5).message)


def h2load(port: int, tmp: Path, args: argparse.Namespace, grpc: bool = True) -> dict[str, float]:
    log = tmp / "h2load.log"
    cmd = [
        "h2load",
        "-t1",
        f"-c{args.clients}",
        f"-m{args.streams}",
        f"-D{args.duration}",
        f"--warm-up-time={args.warmup}",
        f"--log-file={log}",
    ]
    if grpc:
        cmd += [
            "-d",
            str(tmp / "req.bin"),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"http://127.0.0.1:{port}{PATH}",
        ]
    else:
        cmd += ["-H", "x-sofamesh-service: bench", f"http://127.0.0.1:{port}/"]
    pid = PROXY_PIDS.get(port)
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    spent = cpu_seconds(pid) - before if pid else 0.0
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    lat = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    failed = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    bad = int(failed.group(2)) + int(failed.group(3)) if failed else -1
    return {
        "rps": rps,
        "p50": lat[len(lat) // 2] / 1000 if lat else 0.0,
        "p99": lat[int(len(lat) * 0.99)] / 1000 if lat else 0.0,
        "errors": float(bad),
        "cpu_us": spent / max(rps * (args.duration + args.warmup), 1.0) * 1e6,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def spawn(cmd: list[str], procs: list[subprocess.Popen[bytes]], **kw: object) -> None:
    procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw))  # type: ignore[call-overload]


def publish(registry: Path, endpoints: list[tuple[str, int, str]]) -> subprocess.Popen[bytes]:
    """A process that publishes (service, port, protocol) in the file registry while it runs."""
    eps = ", ".join(f"Endpoint({s!r}, '127.0.0.1', {p}, protocol={pr!r})" for s, p, pr in endpoints)
    code = (
        "import anyio\nfrom sofamesh.registry import FileRegistry\nfrom sofamesh.endpoint import Endpoint\n"
        "async def main():\n"
        f"    async with FileRegistry({str(registry)!r}) as r:\n"
        f"        for ep in [{eps}]:\n"
        "            await r.publish(ep)\n"
        "        print('up', flush=True)\n        await anyio.sleep_forever()\n"
        "anyio.run(main)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    return proc


def start_sidecar(
    tmp: Path, backend: str, procs: list[subprocess.Popen[bytes]], src: str | None = None
) -> int:
    """A sidecar with one outbound gRPC listener, once it listens: its port."""
    port = free_port()
    config = {"app": "bench", "registry": f"file://{tmp}/registry",
              "policy": {"connect_retries": 1},
              "outbound": [{"protocol": "grpc", "listen": f"127.0.0.1:{port}"}]}  # fmt: skip
    name = f"{backend}{'-baseline' if src else ''}"
    procs.append(netutil.start_sidecar(tmp, name, config, backend, env=src_env(src)))
    PROXY_PIDS[port] = procs[-1].pid
    wait_port(port)
    return port


ENVOY_CONF = """
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: h2c_listener
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_h2c
          codec_type: AUTO
          http2_protocol_options: {{}}
          route_config:
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: {{ prefix: "/helloworld." }}
                route: {{ cluster: grpc_backend, timeout: 0s }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: nginx_http }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: grpc_backend
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: grpc_backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {grpc} }} }} }}
  - name: nginx_http
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: nginx_http
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {http} }} }} }}
"""


def start_envoy(
    tmp: Path, grpc_port: int, http_port: int, procs: list[subprocess.Popen[bytes]]
) -> int:
    """Envoy as in the peers' envoy-h2c.yaml (same routes), plain HTTP to nginx over HTTP/1.1."""
    port, admin = free_port(), free_port()
    conf = ENVOY_CONF.format(port=port, admin=admin, grpc=grpc_port, http=http_port)
    procs.append(netutil.start_envoy(tmp, "envoy", conf, base_id=79))
    PROXY_PIDS[port] = procs[-1].pid
    wait_port(port)
    return port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1, help="h2load's warm-up seconds")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--upstream", choices=["grpcio", "nginx"], default="grpcio")
    ap.add_argument("--h2c", action="store_true", help="also plain HTTP over h2c (to nginx)")
    ap.add_argument("--no-trio", action="store_true")
    add_baseline_arg(ap)
    ap.add_argument(
        "--quick", action="store_true", help="one 1 s round per path, nginx upstream, no trio"
    )
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.runs, args.no_trio = 1, 0, 1, True
        args.clients, args.streams, args.upstream = 2, 4, "nginx"
    require_tools("h2load", "nginx", apt="nghttp2-client nginx")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        try:
            paths = start_paths(tmp, args, procs)
            for name, port in paths.items():
                print(f"check {name}: {check_grpc(port)!r}", file=sys.stderr)
            results = run_rounds(paths, tmp, args, grpc=True)
            report("unary gRPC SayHello", results, args)
            if args.h2c:
                h2c_paths = {k: v for k, v in paths.items() if k != "direct"}
                report(
                    "h2c GET (HTTP/1.1 nginx behind)",
                    run_rounds(h2c_paths, tmp, args, grpc=False),
                    args,
                )
        finally:
            stop_all(procs)


def start_paths(
    tmp: Path, args: argparse.Namespace, procs: list[subprocess.Popen[bytes]]
) -> dict[str, int]:
    """The upstreams, their publication, the sidecars and Envoy: the port of each path, by name."""
    gen = generate_stubs(tmp)
    ngx_grpc, ngx_http = free_port(), free_port()
    servers = GRPC_SERVER.format(dir=tmp, grpc_port=ngx_grpc)
    procs.append(netutil.start_nginx(tmp, servers, port=ngx_http, grpc_port=ngx_grpc))
    upstream = ngx_grpc
    if args.upstream == "grpcio":
        upstream = free_port()
        spawn(
            [sys.executable, str(tmp / "grpcio_server.py"), str(upstream)],
            procs,
            env={**os.environ, "PYTHONPATH": str(gen)},
        )
    wait_port(upstream)
    wait_port(ngx_http)
    endpoints = [(SERVICE, upstream, "grpc"), ("bench", ngx_http, "http")]
    procs.append(publish(tmp / "registry", endpoints))
    paths: dict[str, int] = {"direct": upstream}
    for backend in ("asyncio",) if args.no_trio else ("asyncio", "trio"):
        name = "sofamesh" if backend == "asyncio" else "sofamesh (trio)"
        paths[name] = start_sidecar(tmp, backend, procs)
    if args.baseline_src:
        paths["sofamesh @ baseline"] = start_sidecar(tmp, "asyncio", procs, args.baseline_src)
    if ENVOY.exists():
        paths["envoy 1.40"] = start_envoy(tmp, upstream, ngx_http, procs)
    return paths


def run_rounds(
    paths: dict[str, int], tmp: Path, args: argparse.Namespace, grpc: bool
) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
    for _ in range(args.runs):
        for name, port in paths.items():
            results[name].append(h2load(port, tmp, args, grpc))
    return results


def _cpu(name: str, runs: list[dict[str, float]]) -> str:
    """The median round's proxy CPU per request (and the range), blank for no proxy."""
    if name == "direct":
        return ""
    cpus = sorted(r["cpu_us"] for r in runs)
    return f"{cpus[len(cpus) // 2]:.0f} ({cpus[0]:.0f}-{cpus[-1]:.0f})"


def report(
    title: str, results: dict[str, list[dict[str, float]]], args: argparse.Namespace
) -> None:
    print(
        f"\n{title}, upstream {args.upstream}: h2load -t1 -c{args.clients} -m{args.streams}"
        f" -D{args.duration}, {args.runs} rounds, median round per path;"
        f" {os.cpu_count()} cores shared by h2load, proxy and upstream\n"
    )
    print(
        "| path | req/s | p50 ms | p99 ms | failed | proxy CPU µs/req |\n|---|---|---|---|---|---|"
    )
    for name, runs in results.items():
        mid = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        spread = f"{min(r['rps'] for r in runs):.0f}-{max(r['rps'] for r in runs):.0f}"
        print(
            f"| {name} | {mid['rps']:.0f} ({spread}) | {mid['p50']:.2f} | {mid['p99']:.2f} "
            f"| {sum(r['errors'] for r in runs):.0f} | {_cpu(name, runs)} |"
        )
    if "envoy 1.40" in results and "sofamesh" in results:
        env = statistics.median(r["rps"] for r in results["envoy 1.40"])
        ours = statistics.median(r["rps"] for r in results["sofamesh"])
        cpu = statistics.median(r["cpu_us"] for r in results["sofamesh"]) / max(
            statistics.median(r["cpu_us"] for r in results["envoy 1.40"]), 1e-9
        )
        print(f"\nsofamesh / envoy requests/s: {ours / env:.2f}; CPU per request: {cpu:.2f}x")


if __name__ == "__main__":
    main()
