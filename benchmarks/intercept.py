"""What transparent interception costs next to the explicit outbound listener, side by side.

    .venv/bin/python benchmarks/intercept.py [--duration 5] [--connections 20] [--runs 3]
    .venv/bin/python benchmarks/intercept.py --quick   # one 1 s round per path: a smoke run

Needs root (a network namespace, iptables). In one namespace made for the run: nginx
answering a small 200 on 127.0.0.1, and one sidecar (group 1337, which the rules exempt)
whose inbound listener publishes the service `bench` in front of nginx; asyncio + uvloop,
then (`--backend both`, the default but with --quick) the same in a new namespace on trio. `sofamesh-init --proxy-gid 1337` redirects the namespace's outbound TCP.
wrk -t1 (run as root, so redirected) calls, on each path:

- explicit: wrk -> the sidecar's outbound listener (Host: bench) -> inbound -> nginx
- transparent: wrk -> bench's virtual IP:8080, redirected by iptables to the
  transparent listener (original destination, sniffing) -> inbound -> nginx

each with keep-alive connections (the steady state: interception's cost is paid once
per connection) and with a new connection per request (`Connection: close`: the
NAT, `SO_ORIGINAL_DST` and the sniff on every request). Rounds alternate the paths;
the median round per path is reported as Markdown (docs/performance.md), with the
sidecar's CPU time per request from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netutil import add_backend_arg, backends_of, cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sofamesh.intercept import vips  # noqa: E402

NS = f"smbench{os.getpid()}"
GID = "1337"
NGINX_PORT, INBOUND, OUTBOUND, TRANSPARENT = 18080, 18081, 18082, 15001
NGINX_CONF = """
worker_processes 1; daemon off; pid {dir}/nginx.pid; error_log {dir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000;
           location / {{ return 200 "hello from upstream\\n"; }} }}
}}
"""


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def in_ns(*argv: str) -> list[str]:
    return ["ip", "netns", "exec", NS, *argv]


def make_namespace() -> None:
    run("ip", "netns", "add", NS)
    run("ip", "-n", NS, "link", "set", "lo", "up")
    # The virtual IPs need a route for a connect() to start (then NAT redirects it).
    run("ip", "-n", NS, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    run("ip", "-n", NS, "addr", "add", "10.232.0.1/24", "dev", "v0")
    for dev in ("v0", "v1"):
        run("ip", "-n", NS, "link", "set", dev, "up")
    run("ip", "-n", NS, "route", "add", "default", "dev", "v0")


def sidecar_config(tmp: Path) -> dict[str, object]:
    return {
        "app": "bench-sidecar",
        "registry": f"file://{tmp}/reg",
        "inbound": [
            {
                "protocol": "http",
                "listen": f"127.0.0.1:{INBOUND}",
                "upstream": f"127.0.0.1:{NGINX_PORT}",
                "services": ["bench"],
            }
        ],
        "outbound": [{"protocol": "http", "listen": f"127.0.0.1:{OUTBOUND}"}],
        "intercept": {"outbound": f"127.0.0.1:{TRANSPARENT}", "refresh": 0.2},
    }


def start(tmp: Path, backend: str) -> list[subprocess.Popen[bytes]]:
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, port=NGINX_PORT))
    nginx = subprocess.Popen(in_ns("nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)))
    config = tmp / "sidecar.json"
    config.write_text(json.dumps(sidecar_config(tmp)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with open(tmp / "sidecar.log", "wb") as log:  # the child keeps its own descriptor
        sidecar = subprocess.Popen(
            in_ns("setpriv", f"--regid={GID}", "--clear-groups", sys.executable,
                  "-m", "sofamesh.sidecar", "-c", str(config), "--backend", backend),
            env=env, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
    assert sidecar.stdout is not None
    line = sidecar.stdout.readline().decode()
    if "READY" not in line:
        raise SystemExit(f"the sidecar did not start; see {tmp / 'sidecar.log'}")
    init = in_ns(sys.executable, "-m", "sofamesh.intercept", "--proxy-gid", GID)
    subprocess.run(init, env=env, check=True)
    return [nginx, sidecar]


def wait_for(url: str, host: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the sidecar reads the registry every 0.2 s
        done = subprocess.run(
            in_ns("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}", url),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.stdout == "200":
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} never answered 200")


def wrk(url: str, duration: int, connections: int, close: bool, pid: int) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-H", "Host: bench"]
    if close:
        argv += ["-H", "Connection: close"]
    before = cpu_seconds(pid)
    out = subprocess.run(in_ns(*argv, url), check=True, capture_output=True, text=True).stdout
    spent = cpu_seconds(pid) - before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    found = re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    lat = {p: _ms(v, u) for p, v, u in found}
    cpu_us = spent / max(rps * duration, 1) * 1e6
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "cpu_us": cpu_us}


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    add_backend_arg(ap)
    args = ap.parse_args()
    if args.quick:
        args.duration, args.runs = 1, 1
    results: dict[tuple[str, bool], list[dict[str, float]]] = {}
    for backend in backends_of(args):
        measure(args, backend, results)
    report(results, args)


def measure(
    args: argparse.Namespace, backend: str, results: dict[tuple[str, bool], list[dict[str, float]]]
) -> None:
    """Every path's rounds through one sidecar on `backend`, in a namespace of its own."""
    vip = vips.assign(["bench"], "240.240.0.0/16")["bench"]
    on = "" if backend == "asyncio" else f" ({backend})"
    paths = {f"explicit{on}": f"http://127.0.0.1:{OUTBOUND}/",
             f"transparent{on}": f"http://{vip}:8080/"}  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        try:
            make_namespace()
            procs = start(Path(tmp), backend)
            for url in paths.values():
                wait_for(url, "bench")
            for _ in range(args.runs):
                for close in (False, True):
                    for name, url in paths.items():
                        got = wrk(url, args.duration, args.connections, close, procs[1].pid)
                        results.setdefault((name, close), []).append(got)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
            subprocess.run(["ip", "netns", "del", NS], check=False)


def report(
    results: dict[tuple[str, bool], list[dict[str, float]]], args: argparse.Namespace
) -> None:
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.runs} rounds, median round per path;"
        f" {os.cpu_count()} cores shared by wrk, the sidecar and nginx; load {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| path | connections | req/s | p50 ms | p99 ms | sidecar CPU us/req |\n|---|---|---|---|---|---|"
    )
    for (name, close), runs in results.items():
        mid = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        kind = "new per request" if close else "keep-alive"
        print(
            f"| {name} | {kind} | {mid['rps']:,.0f} | {mid['p50']:.2f} | {mid['p99']:.2f} "
            f"| {statistics.median(r['cpu_us'] for r in runs):.0f} |"
        )


if __name__ == "__main__":
    main()
