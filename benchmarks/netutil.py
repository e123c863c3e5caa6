"""What every benchmark shares: free loopback ports and waiting for a listener, starting
nginx, a sidecar and Envoy, wrk's figures, and a process's CPU and RSS from /proc."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENVOY = ROOT / ".venv-envoy" / "bin" / "envoy"
TICKS = os.sysconf("SC_CLK_TCK")

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
  }}{servers}
}}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Return once something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def add_baseline_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also run a sidecar from another checkout's src/ (e.g. a worktree of the previous"
        " release), as the path 'sofamesh @ baseline': before and after in one run",
    )


def src_env(src: str | None) -> dict[str, str] | None:
    """The environment for a sidecar run from `src` (a checkout's src/), or None for this one."""
    if src is None:
        return None
    return {**os.environ, "PYTHONPATH": os.path.abspath(src)}


def wrk_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments of a benchmark of wrk rounds through proxy paths, parsed."""
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one 1 s round per path, no warm-up")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.connections, args.runs = 1, 8, 1
    return args


def add_backend_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--backend",
        choices=["asyncio", "trio", "both"],
        help="the event loop of sofamesh's side (asyncio runs on uvloop); default both,"
        " asyncio alone with --quick",
    )


def backends_of(args: argparse.Namespace) -> list[str]:
    """The backends `--backend` names, in the order their paths run."""
    chosen = args.backend or ("asyncio" if getattr(args, "quick", False) else "both")
    return ["asyncio", "trio"] if chosen == "both" else [chosen]


def require_tools(*tools: str, apt: str = "") -> None:
    """Exit with the apt-get line to run if a command the benchmark drives is missing."""
    for tool in tools:
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install -y {apt or tool}")


# -- processes ---------------------------------------------------------------------------------


def start_nginx(tmp: Path, servers: str = "", **ports: int) -> subprocess.Popen[bytes]:
    """nginx answering 200 on `port`, and `servers` (more server blocks, on more of `ports`),
    once every port accepts."""
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, servers=servers, **ports))
    proc = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf")], stderr=subprocess.DEVNULL)
    for port in ports.values():
        wait_port(port)
    return proc


def start_sidecar(
    tmp: Path,
    name: str,
    config: dict[str, Any],
    backend: str = "asyncio",
    env: dict[str, str] | None = None,
    quiet: bool = False,
) -> subprocess.Popen[bytes]:
    """`python -m sofamesh.sidecar` with `config`, starting (wait for its ports yourself);
    `quiet`: errors only, and not on this process's stderr (attacks make many)."""
    # Its own upgrade socket: sidecars of one app share a default one, and a second sidecar
    # of the same app (this run's other one, or another run's) would take its listeners over.
    config = {"upgrade_socket": str(tmp / f"sidecar-{name}.sock"), **config}
    path = tmp / f"sidecar-{name}.json"
    path.write_text(json.dumps(config))
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(path), "--backend", backend,
            "--log-level", "ERROR" if quiet else "WARNING"]  # fmt: skip
    stderr = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def start_envoy(
    tmp: Path, name: str, conf: str, base_id: int, concurrency: int = 1
) -> subprocess.Popen[bytes]:
    """Envoy 1.40 with `conf` (YAML or JSON), starting; `base_id` apart from other Envoys'."""
    path = tmp / f"{name}.yaml"
    path.write_text(conf)
    argv = [str(ENVOY), "-c", str(path), "--concurrency", str(concurrency), "--base-id",
            str(base_id), "--log-level", "error"]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, then SIGKILL whichever has not exited within 10 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mib(pid: int) -> float:
    """The process's resident set in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- wrk ---------------------------------------------------------------------------------------


def wrk(port: int, host: str, duration: int, connections: int) -> dict[str, float]:
    """`wrk -t1` keep-alive GETs of / with `Host: host`: requests, req/s, p50 and p99 ms, non-2xx."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-H",
            f"Host: {host}", f"http://127.0.0.1:{port}/"]  # fmt: skip
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
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
