"""Idle memory of a sidecar, side by side in one run: one HTTP listener, every protocol, Envoy.

    .venv/bin/python benchmarks/idle_rss.py [--runs 3] [--settle 2] [--backend asyncio|trio]
    .venv/bin/python benchmarks/idle_rss.py --quick    # one run per path, no settling: a smoke run
    .venv/bin/python benchmarks/idle_rss.py --breakdown  # where the sidecar's MB go, by package
    .venv/bin/python benchmarks/idle_rss.py --backend both --baseline-src /tmp/base/src

Each path starts one process, waits until it serves (the sidecar's `SOFAMESH
READY` line, printed once every listener and the admin API listen; for Envoy,
every port accepting a connection), lets it settle and reads `VmRSS` from
/proc/PID/status:

- sofamesh, one HTTP/1.1 outbound listener;
- sofamesh, every protocol: HTTP/1.1, HTTP/2, gRPC, Bolt and Dubbo outbound
  listeners (the same file registry, the admin API on), idle: no connection
  yet, so the protocols loaded on first use (protocols/lazy.py) have not loaded;
- sofamesh, every protocol, connected: the same once one connection has been
  opened and closed on every port, which loads every protocol;
- Envoy 1.40 (`--concurrency 1`) with the equivalent listeners: three HTTP
  connection managers (HTTP/1.1, HTTP/2, gRPC over HTTP/2) and two
  `tcp_proxy` listeners (Bolt and Dubbo, which Envoy relays as bytes), an
  admin listener and one static cluster.

With `--baseline-src DIR` the sidecar paths run from that checkout's src/ as
well (before and after in one run); `--backend both` runs every sidecar path on
asyncio and on trio. Rounds alternate the paths; the table gives the median RSS in MB (1 MB = 2^20
bytes) and the range over rounds. `--breakdown` runs the sidecar with every
protocol once under `rss_by_module.py` instead, and prints the RSS each
package's imports added, the interpreter's start and what the running process
added beyond imports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netutil import ENVOY, add_baseline_arg, free_port, rss_mib, src_env, wait_port

PROTOCOLS = ("http", "h2", "grpc", "bolt", "dubbo")

ENVOY_HCM = """
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: {codec}
          route_config:
            virtual_hosts:
            - {{ name: all, domains: ["*"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: upstream }} }}] }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"""
ENVOY_TCP = """
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: upstream
"""
ENVOY_TAIL = """
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


def sidecar(tmp: Path, protocols: tuple[str, ...], backend: str) -> tuple[list[str], list[int]]:
    ports = [free_port() for _ in protocols]
    admin = free_port()
    cfg = tmp / f"sidecar-{len(list(tmp.glob('sidecar-*.json')))}.json"  # one per path
    cfg.write_text(json.dumps({
        "app": "bench", "registry": f"file://{tmp}/registry",
        "admin": f"127.0.0.1:{admin}",
        "outbound": [
            {"protocol": p, "listen": f"127.0.0.1:{port}"} for p, port in zip(protocols, ports, strict=True)
        ],
    }))  # fmt: skip
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--backend", backend,
            "--log-level", "WARNING"]  # fmt: skip
    return argv, [*ports, admin]


def envoy(tmp: Path) -> tuple[list[str], list[int]]:
    ports = [free_port() for _ in PROTOCOLS]
    admin = free_port()
    conf = f"admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}"
    conf += "\nstatic_resources:\n  listeners:"
    codecs = [("http", "HTTP1"), ("h2", "HTTP2"), ("grpc", "HTTP2")]
    for (name, codec), port in zip(codecs, ports[:3], strict=True):
        conf += ENVOY_HCM.format(name=name, codec=codec, port=port)
    for name, port in zip(["bolt", "dubbo"], ports[3:], strict=True):
        conf += ENVOY_TCP.format(name=name, port=port)
    conf += ENVOY_TAIL.format(upstream=free_port())
    (tmp / "envoy.yaml").write_text(conf)
    argv = [str(ENVOY), "-c", str(tmp / "envoy.yaml"), "--concurrency", "1", "--base-id", "81",
            "--log-level", "error"]  # fmt: skip
    return argv, [*ports, admin]


# argv, ports, environment, and how it is read: "ports" (Envoy: each port connected once),
# "ready" (the sidecar's READY line, no connection), "connected" (READY, then each port).
Run = tuple[list[str], list[int], "dict[str, str] | None", str]


def measure(path: Run, settle: float) -> float:
    argv, ports, env, how = path
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        try:
            if how != "ports":
                wait_ready(proc)
            for port in ports if how != "ready" else ():
                wait_port(port)
        except RuntimeError as e:
            proc.terminate()
            raise RuntimeError(f"{argv}: {e}: {proc.communicate()[1].decode()[-2000:]}") from None
        time.sleep(settle)  # start-up work that finishes after the listeners open
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        return rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def wait_ready(proc: subprocess.Popen[bytes]) -> None:
    """Return once the sidecar prints its READY line (it listens on every port then)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"SOFAMESH READY"):
            return
    raise RuntimeError("exited before it was ready")


def breakdown(backend: str, settle: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "registry").mkdir()
        argv, ports = sidecar(tmp, PROTOCOLS, backend)
        helper = [sys.executable, str(Path(__file__).with_name("rss_by_module.py"))]
        # The admin API's port only: a connection to a listener would load its protocol.
        argv = [*helper, str(ports[-1]), str(settle), *argv[1:]]
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        print(f"sidecar with every protocol, backend {backend}: RSS by what loaded it")
        print(proc.stderr)


def sidecar_paths(tmp: Path, backends: list[str], baseline: str | None) -> dict[str, Run]:
    """Both sidecar configs on each backend, from this checkout and from `baseline`'s src/."""
    paths: dict[str, Run] = {}
    for backend in backends:
        on = "" if len(backends) == 1 else f", {backend}"
        for src, at in [(None, ""), *([(baseline, " @ baseline")] if baseline else [])]:
            for label, protocols, how in [("one HTTP/1.1 listener", ("http",), "ready"),
                                          ("every protocol", PROTOCOLS, "ready"),
                                          ("every protocol, connected", PROTOCOLS, "connected")]:  # fmt: skip
                argv, ports = sidecar(tmp, protocols, backend)
                paths[f"sofamesh{at}, {label}{on}"] = (argv, ports, src_env(src), how)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--backend", choices=["asyncio", "trio", "both"], default="asyncio")
    add_baseline_arg(ap)
    ap.add_argument("--quick", action="store_true", help="one run per path, no settling")
    ap.add_argument("--breakdown", action="store_true", help="the sidecar's RSS by package")
    args = ap.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    if args.breakdown:
        breakdown(backends[0], args.settle)
        return
    if args.quick:
        args.runs, args.settle = 1, 0.0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "registry").mkdir()
        paths = sidecar_paths(tmp, backends, args.baseline_src)
        if ENVOY.exists():
            paths["envoy 1.40, every protocol"] = (*envoy(tmp), None, "ports")
        samples: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.runs):
            for name, path in paths.items():
                samples[name].append(measure(path, args.settle))
    print(f"idle RSS, MB, median of {args.runs} (range), backend {args.backend}")
    print("| process | RSS MB | range |")
    print("|---|---|---|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f} |")


if __name__ == "__main__":
    main()
