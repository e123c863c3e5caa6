"""Bolt throughput, side by side in one run: direct, one sofamesh sidecar, Envoy tcp_proxy.

    .venv/bin/python benchmarks/bolt.py [--duration 10] [--runs 3] [--connections 16] [--window 32]
    .venv/bin/python benchmarks/bolt.py --quick   # one 0.5 s round per path, no trio: a smoke run

Provider: the sofamesh SDK serving `echo` (`mesh.serve_bolt`, asyncio + uvloop), published
in a file registry. The load generator (raw asyncio protocols on uvloop, one process) keeps
`--window` requests in flight on each of `--connections` connections, each an `echo` with a
1 KB string argument framed as Java SOFARPC frames it (service, method and trace headers).
Paths, each measured with the same generator:

- direct: generator -> provider
- sofamesh: generator -> sidecar outbound listener (routes each request on its `service`
  header: discovery on the file registry, the whole outbound chain, ids re-mapped on one
  upstream connection) -> provider; asyncio + uvloop, and trio
- envoy tcp_proxy: generator -> Envoy 1.40 (`--concurrency 1`, L4 `tcp_proxy`, which
  relays bytes and cannot route per request) -> provider

Rounds alternate the paths so that drift on a noisy machine hits each alike; the table gives
the median round per path with the range over rounds, and the CPU each process spent per
request (from /proc). Prints Markdown (paste into docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netutil import add_baseline_arg, free_port, src_env, wait_port

ROOT = Path(__file__).resolve().parents[1]
ENVOY = ROOT / ".venv-envoy" / "bin" / "envoy"
IFACE, VERSION = "com.example.bench.EchoService", "1.0"
SERVICE = f"{IFACE}:{VERSION}"
TICKS = os.sysconf("SC_CLK_TCK")

ENVOY_CONF = """
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: bolt
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bolt
          cluster: provider
  clusters:
  - name: provider
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: provider
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
"""


# -- the provider process ----------------------------------------------------------------------


class Echo:
    def echo(self, value: Any) -> Any:
        return value


async def provide(port: int, registry: str) -> None:
    import anyio

    import sofamesh

    cfg = {"app": "bench-provider", "registry": registry}
    async with (
        sofamesh.open_mesh(cfg, env={}) as mesh,
        mesh.serve_bolt(Echo(), IFACE, version=VERSION, listen=f"127.0.0.1:{port}"),
    ):
        print("up", flush=True)
        await anyio.sleep_forever()


# -- the load generator ------------------------------------------------------------------------


def request_template() -> bytes:
    """One echo(1 KB string) request as Java SOFARPC frames it."""
    from sofamesh.codecs.bolt import encode, request
    from sofamesh.codecs.bolt.sofarpc import SofaRequest, encode_request

    trace = {"sofaTraceId": "7f0000011700000000001000123", "sofaRpcId": "0", "sofaCallerApp": "gen"}
    body = encode_request(
        SofaRequest("echo", ["java.lang.String"], SERVICE, None, {"rpc_trace_context": trace}),
        ["x" * 1024],
    )
    headers = {
        "service": SERVICE, "sofa_head_target_service": SERVICE, "sofa_head_method_name": "echo",
        **{f"rpc_trace_context.{k}": v for k, v in trace.items()},
    }  # fmt: skip
    return encode(request(0, body, headers=headers, timeout_ms=10_000))


_RESPONSE = struct.Struct(">BBHBiBHhhi")  # Bolt v1 response fixed header


class Load(asyncio.Protocol):
    """One connection keeping `window` requests in flight; latencies in `record`."""

    def __init__(self, template: bytes, window: int, record: list[float], state: dict[str, Any]):
        self.template = bytearray(template)
        self.window = window
        self.record = record
        self.state = state
        self.buf = bytearray()
        self.sent: dict[int, float] = {}
        self.next_id = 1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send(self.window)

    def _send(self, n: int) -> None:
        out = []
        now = time.perf_counter()
        for _ in range(n):
            rid = self.next_id
            self.next_id += 1
            struct.pack_into(">i", self.template, 5, rid)
            out.append(bytes(self.template))
            self.sent[rid] = now
        assert self.transport is not None
        self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        done, pos, now = 0, 0, time.perf_counter()
        while len(buf) - pos >= 20:
            _, _, _, _, rid, _, status, cl, hl, bl = _RESPONSE.unpack_from(buf, pos)
            total = 20 + cl + hl + bl
            if len(buf) - pos < total:
                break
            pos += total
            done += 1
            if status != 0:
                self.state["errors"] += 1
            if self.state["measuring"]:
                self.record.append(now - self.sent.pop(rid))
            else:
                self.sent.pop(rid, None)
        del buf[:pos]
        if done and not self.state["stopping"]:
            self._send(done)


async def generate(
    port: int, connections: int, window: int, duration: float, warmup: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    template = request_template()
    record: list[float] = []
    state: dict[str, Any] = {"measuring": False, "stopping": False, "errors": 0}
    conns = [
        await loop.create_connection(
            lambda: Load(template, window, record, state), "127.0.0.1", port
        )
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


# -- orchestration -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, **kw)


def start_sidecar(
    tmp: Path, registry: str, backend: str, src: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    name = f"sidecar-{backend}{'-baseline' if src else ''}"
    cfg = tmp / f"{name}.json"
    cfg.write_text(json.dumps({
        "app": "bench", "registry": registry,
        # Its own upgrade socket: sidecars of one app share a default one, and a second
        # sidecar of app "bench" (this run's other one, or another run's) would try to
        # take this one's listeners over.
        "upgrade_socket": str(tmp / f"{name}.sock"),
        "outbound": [{"protocol": "bolt", "listen": f"127.0.0.1:{port}"}],
    }))  # fmt: skip
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--backend", backend,
            "--log-level", "WARNING"]  # fmt: skip
    proc = start(argv, stdout=subprocess.DEVNULL, env=src_env(src))
    wait_port(port)
    return proc, port


def start_envoy(tmp: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int]:
    port, admin = free_port(), free_port()
    (tmp / "envoy.yaml").write_text(ENVOY_CONF.format(port=port, admin=admin, upstream=upstream))
    argv = [str(ENVOY), "-c", str(tmp / "envoy.yaml"), "--concurrency", "1", "--base-id", "78",
            "--log-level", "error"]  # fmt: skip
    proc = start(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def measure(
    port: int, args: argparse.Namespace, pids: list[int], duration: float
) -> dict[str, Any]:
    """One round against `port`, in a child generator process; CPU µs per request per pid."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    argv = [sys.executable, __file__, "load", "--port", str(port), "--connections",
            str(args.connections), "--window", str(args.window), "--duration", str(duration),
            "--warmup", str(args.warmup)]  # fmt: skip
    gen = start(argv, stdout=subprocess.PIPE)
    out, _ = gen.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    spent = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    per = max(result["count"], 1) / duration  # requests/s measured; CPU over warmup too
    result["cpu_us"] = {pid: s / ((duration + args.warmup) * per) * 1e6 for pid, s in spent.items()}
    return result


def main() -> None:
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
    if args.mode == "provider":
        import uvloop

        uvloop.run(provide(args.port, args.registry))
        return
    if args.mode == "load":
        import uvloop

        res = uvloop.run(
            generate(args.port, args.connections, args.window, args.duration, args.warmup)
        )
        print(json.dumps(res), flush=True)
        return
    bench(args)


def bench(args: argparse.Namespace) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        registry = f"file://{tmp}/registry?poll=0.1"
        try:
            upstream = free_port()
            provider = start(
                [
                    sys.executable,
                    __file__,
                    "provider",
                    "--port",
                    str(upstream),
                    "--registry",
                    registry,
                ],
                stdout=subprocess.PIPE,
            )
            procs.append(provider)
            assert provider.stdout is not None and provider.stdout.readline().strip() == b"up"
            paths: dict[str, tuple[int, list[int]]] = {"direct": (upstream, [provider.pid])}
            for backend in ("asyncio",) if args.no_trio else ("asyncio", "trio"):
                proc, port = start_sidecar(tmp, registry, backend)
                procs.append(proc)
                name = "sofamesh sidecar" + (
                    ", trio" if backend == "trio" else ", asyncio + uvloop"
                )
                paths[name] = (port, [provider.pid, proc.pid])
            if args.baseline_src:
                proc, port = start_sidecar(tmp, registry, "asyncio", args.baseline_src)
                procs.append(proc)
                paths["sofamesh @ baseline"] = (port, [provider.pid, proc.pid])
            if ENVOY.exists():
                proc, port = start_envoy(tmp, upstream)
                procs.append(proc)
                paths["envoy 1.40 tcp_proxy"] = (port, [provider.pid, proc.pid])
            for port, pids in paths.values() if not args.quick else ():
                measure(port, args, pids, 2)  # warm every path: connections, discovery
            results: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
            for _ in range(args.runs):
                for name, (port, pids) in paths.items():
                    results[name].append(measure(port, args, pids, args.duration))
            report(results, args)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
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
    envoy = [r["rps"] for r in results.get("envoy 1.40 tcp_proxy", [])]
    ours = [r["rps"] for r in results["sofamesh sidecar, asyncio + uvloop"]]
    if envoy:
        ratio = statistics.median(ours) / statistics.median(envoy)
        rounds = ", ".join(f"{o / e:.2f}" for o, e in zip(ours, envoy, strict=True))
        print(f"\nsofamesh sidecar / envoy tcp_proxy requests/s: {ratio:.2f} (per round: {rounds})")


if __name__ == "__main__":
    main()
