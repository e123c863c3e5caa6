"""A soak: the sidecar at 70 % of its measured maximum for a long while; RSS growth, p99 drift.

    PYTHONPATH=src .venv/bin/python benchmarks/soak.py [--duration 600] [--share 0.7]
    PYTHONPATH=src .venv/bin/python benchmarks/soak.py --quick   # one 3 s window

The path is benchmarks/http_proxy.py's: a client -> the sidecar's outbound HTTP/1.1
listener (Host resolved in a file registry) -> nginx. First `wrk -t1 -c50` for a few
seconds measures the maximum req/s; then `h2load --h1` paces `--share` of it (`--rps` per
client, 10 clients, keep-alive) in windows of 10 s, each reporting its p50 / p99 and the
sidecar's RSS at its end. Growth is last window's RSS minus the first's; drift is last
window's p99 over the first's. The sidecar runs on asyncio + uvloop, then (`--backend
both`, the default but with --quick) a fresh one on trio, each soaked for `--duration`.
Prints Markdown (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from http_proxy import publish_upstream, start_sidecar
from netutil import (
    add_backend_arg,
    backends_of,
    free_port,
    require_tools,
    rss_mib,
    start_nginx,
    stop_all,
    wrk,
)

CLIENTS = 10
WINDOW = 10
QUICK_WINDOW = 3


def paced(port: int, rps: int, seconds: int, tmp: Path) -> dict[str, float]:
    """`rps` requests/s over `CLIENTS` keep-alive connections for `seconds`: p50, p99, errors."""
    log = tmp / "h2load.log"
    log.unlink(missing_ok=True)
    cmd = ["h2load", "--h1", f"-c{CLIENTS}", f"--rps={max(1, rps // CLIENTS)}", f"-D{seconds}",
           f"--log-file={log}", "-H", ":authority: bench", f"http://127.0.0.1:{port}/"]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    lat = sorted(int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line)
    done = next((ln for ln in out.splitlines() if "succeeded" in ln), "")
    ok = int(done.split("succeeded")[0].split(",")[-1]) if done else 0
    return {
        "ok": ok,
        "p50": lat[len(lat) // 2] if lat else 0.0,
        "p99": lat[int(len(lat) * 0.99)] if lat else 0.0,
        "errors": len(lat) - ok if lat else 0,
    }


def soak(port: int, pid: int, args: argparse.Namespace, tmp: Path, backend: str) -> None:
    window = QUICK_WINDOW if args.quick else WINDOW
    peak = wrk(port, "bench", 1 if args.quick else 5, 50)["rps"]
    rate = int(peak * args.share)
    load = os.getloadavg()
    print(f"sidecar on {backend}; {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"max {peak:,.0f} req/s (wrk -t1 -c50); soak at {args.share:.0%} = {rate:,} req/s "
          f"(h2load --h1 -c{CLIENTS}) for {args.duration} s\n")  # fmt: skip
    print(
        "| t s | req/s done | p50 ms | p99 ms | errors | sidecar RSS MiB |\n|---|---|---|---|---|---|"
    )
    rows: list[tuple[float, float]] = []
    start_rss = rss_mib(pid)
    for i in range(max(1, args.duration // window)):
        r = paced(port, rate, window, tmp)
        rows.append((r["p99"], rss_mib(pid)))
        print(f"| {(i + 1) * window} | {r['ok'] / window:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
              f"| {r['errors']:.0f} | {rows[-1][1]:.1f} |", flush=True)  # fmt: skip
    (p99_0, rss_0), (p99_n, rss_n) = rows[0], rows[-1]
    print(
        f"\n| RSS growth | {rss_n - rss_0:+.1f} MiB (first window {rss_0:.1f}, before {start_rss:.1f}) |"
    )
    print(f"| p99 drift | {p99_n / p99_0 if p99_0 else 0:.2f}x ({p99_0:.2f} -> {p99_n:.2f} ms) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=600, help="seconds at the paced load")
    ap.add_argument("--share", type=float, default=0.7, help="share of the measured maximum")
    ap.add_argument("--quick", action="store_true", help="one 3 s window")
    add_backend_arg(ap)
    args = ap.parse_args()
    if args.quick:
        args.duration = QUICK_WINDOW
    require_tools("wrk", "h2load", "nginx", apt="wrk nghttp2-client nginx-light")
    for backend in backends_of(args):
        soak_one(args, backend)
        print()


def soak_one(args: argparse.Namespace, backend: str) -> None:
    """nginx, its publication and one sidecar on `backend`, soaked, then stopped."""
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        try:
            upstream = free_port()
            procs.append(start_nginx(tmp, port=upstream))
            procs.append(publish_upstream(tmp / "registry", upstream))
            sidecar, port = start_sidecar(tmp, f"file://{tmp}/registry", backend)
            procs.append(sidecar)
            soak(port, sidecar.pid, args, tmp, backend)
        finally:
            stop_all(procs)


if __name__ == "__main__":
    main()
