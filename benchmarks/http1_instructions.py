"""Instructions per proxied HTTP/1.1 request in the sidecar, counted by callgrind, and where
the sidecar's CPU goes, by part.

    .venv/bin/python benchmarks/http1_instructions.py [--warm 1000] [--requests 3200]
    .venv/bin/python benchmarks/http1_instructions.py --baseline-src /work/base/src
    .venv/bin/python benchmarks/http1_instructions.py --quick   # 100 + 200 requests: a smoke run

Timings on a shared 2-core machine swing by 2x between runs; instruction counts repeat
within about 1 %, so they judge a change to the sidecar's HTTP/1.1 path. The sidecar
(asyncio + uvloop, one outbound HTTP/1.1 listener, the file registry, the whole outbound
chain) runs under `valgrind --tool=callgrind --instr-atstart=no` in front of nginx;
`--connections` keep-alive connections send wrk's request (`GET /`, `Host: bench`), one at a
time each, `--warm` requests warm it, then `callgrind_control -i on` / `off` counts exactly
`--requests`. Callgrind slows the process about 50x but not the clock, so the work the
sidecar does by the clock is parked for the count: the memory checks (`overload:
{check_interval: 3600, trim_heap: false}`) and the file registry's poll (`?poll=60`). The
idle process's instructions a second are counted too (`--idle` seconds, instrumented with
no traffic), and the table gives the count per request less that rate over the counted run.
The count is the process's own instructions, not the kernel's (the loopback `write`s).

Then, unless `--no-parts`, where the time goes: the same sidecar without valgrind, under
cProfile switched on (SIGUSR1) for `--requests` requests after the warm-up and off (SIGUSR2)
after them; the table gives each part's inclusive time per request (a coroutine's counts
only while it runs) and its share of the process's CPU over the phase. cProfile adds a
fixed cost per call, so parts made of many small calls read high, and the kernel's time
under a call (`write`) is in that call; what no Python function holds is the event loop
(uvloop's C code and the kernel's reads and waits under it). `--baseline-src DIR` counts a
sidecar run from another checkout's `src/` too, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bolt_instructions import instrument, top
from http_proxy import publish_upstream
from netutil import (
    add_baseline_arg,
    cpu_seconds,
    free_port,
    require_tools,
    src_env,
    start_nginx,
    wait_port,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"  # what `wrk -H 'Host: bench'` sends
PARKED = {"overload": {"check_interval": 3600, "trim_heap": False}}


class _Caller(asyncio.Protocol):
    """One keep-alive connection, one request at a time, until `state["left"]` runs out."""

    def __init__(self, state: dict[str, int], finished: asyncio.Event) -> None:
        self.state, self.finished = state, finished
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self.state["left"] > 0 and self.transport is not None:
            self.state["left"] -= 1
            self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        self.state["errors"] += not head.startswith(b"http/1.1 200")
        self.buf = self.buf[end + 4 + length :]
        self.state["done"] += 1
        if self.state["done"] >= self.state["n"]:
            self.finished.set()
        self._send()


async def requests(port: int, n: int, connections: int) -> int:
    """Make exactly `n` requests through `port`; how many were not answered 200."""
    state = {"n": n, "left": n, "done": 0, "errors": 0}
    finished = asyncio.Event()
    loop = asyncio.get_running_loop()
    conns = [
        await loop.create_connection(lambda: _Caller(state, finished), "127.0.0.1", port)
        for _ in range(connections)
    ]
    await finished.wait()
    for transport, _ in conns:
        transport.close()
    return state["errors"]


def start_sidecar(
    tmp: Path, registry: str, src: str | None, out: Path | None
) -> tuple[subprocess.Popen[bytes], int]:
    """The sidecar (under callgrind when `out` names its dump), once it listens."""
    port = free_port()
    name = "baseline" if src else "this"
    cfg = tmp / f"sidecar-{name}-{port}.json"
    cfg.write_text(json.dumps({
        "app": "bench", "registry": registry, "upgrade_socket": str(tmp / f"{port}.sock"),
        "outbound": [{"protocol": "http", "listen": f"127.0.0.1:{port}"}], **PARKED,
    }))  # fmt: skip
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--backend", "asyncio",
            "--log-level", "WARNING"]  # fmt: skip
    if out is not None:
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}", *argv]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=src_env(src), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port, 300)
    return proc, port


def totals(out: Path) -> list[int]:
    """Each callgrind dump's count, in the order they were written."""
    counts = []
    for name in sorted(glob.glob(f"{out}*"), key=lambda n: Path(n).stat().st_mtime):
        for line in Path(name).read_text(errors="replace").splitlines():
            if line.startswith("totals:"):  # "summary:" wraps round once counters were zeroed
                counts.append(int(line.split()[1]))
                break
    return counts


def count(tmp: Path, registry: str, src: str | None, args: argparse.Namespace) -> dict[str, float]:
    """Instructions per request of one tree: idle rate first, then the counted requests."""
    out = tmp / f"callgrind-{'baseline' if src else 'this'}.out"
    sidecar, port = start_sidecar(tmp, registry, src, out)
    try:
        errors = asyncio.run(requests(port, args.warm, args.connections))
        instrument(sidecar.pid, True)
        time.sleep(args.idle)
        subprocess.run(["callgrind_control", "-d", str(sidecar.pid)], check=True,
                       capture_output=True)  # fmt: skip
        started = time.monotonic()
        errors += asyncio.run(requests(port, args.requests, args.connections))
        seconds = time.monotonic() - started
        instrument(sidecar.pid, False)
    finally:
        sidecar.terminate()
        sidecar.wait(120)  # it writes its last dump as it exits
    idle, counted = totals(out)[-2:]
    rate = idle / args.idle
    return {"raw": counted / args.requests, "net": (counted - rate * seconds) / args.requests,
            "idle": rate, "seconds": seconds, "errors": errors,
            "dump": str(max(glob.glob(f"{out}*"), key=lambda n: Path(n).stat().st_size))}  # fmt: skip


# The sidecar with a profiler the benchmark switches on and off by signal.
PROFILED = """
import cProfile, runpy, signal, sys
out, sys.argv = sys.argv[1], ["sofamesh.sidecar", *sys.argv[2:]]
profile = cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
signal.signal(signal.SIGUSR2, lambda *_: (profile.disable(), profile.dump_stats(out)))
runpy.run_module("sofamesh.sidecar", run_name="__main__")
"""

# (row, module path, function or a caller's name after "<-"); indent shows what holds what.
ROWS = (
    ("server loop, all of it", "protocols/http/server.py", "_serve"),
    ("  parse the request", "codecs/http1/server.py", "next_request"),
    ("  handler", "protocols/http/support.py", "__call__"),
    ("    request -> invocation", "protocols/http/mapping.py", "request_to_invocation"),
    ("    chain: the filters (the handler less the other rows under it)", "", ""),
    ("    terminal: HttpSupport.send", "protocols/http/support.py", "send"),
    ("      invocation -> request", "protocols/http/mapping.py", "invocation_to_request"),
    ("      pool: Http1Pool.send", "protocols/http/pool.py", "send"),
    ("        exchange: Http1Connection.request", "protocols/http/conn.py", "request"),
    ("          encode the request", "codecs/http1/client.py", "encode_request"),
    ("          write the request", "transport/streams.py", "try_send<-request"),
    ("          read the response", "transport/streams.py", "receive<-request"),
    ("          parse the response", "codecs/http1/client.py", "receive_data"),
    ("    result -> response", "protocols/http/mapping.py", "result_to_response"),
    ("  encode the response", "codecs/http1/server.py", "encode_response"),
    ("  write the response", "transport/streams.py", "try_send<-_serve"),
    ("  read the next request", "transport/streams.py", "receive<-_next_request"),
)


def profiled(tmp: Path, registry: str, args: argparse.Namespace) -> tuple[pstats.Stats, float]:
    """cProfile's stats over `--requests` requests, and the sidecar's CPU seconds meanwhile."""
    port, out = free_port(), tmp / "profile.pstats"
    cfg = tmp / "sidecar-profiled.json"
    cfg.write_text(json.dumps({
        "app": "bench", "registry": registry, "upgrade_socket": str(tmp / "profiled.sock"),
        "outbound": [{"protocol": "http", "listen": f"127.0.0.1:{port}"}], **PARKED,
    }))  # fmt: skip
    argv = [sys.executable, "-c", PROFILED, str(out), "-c", str(cfg), "--backend", "asyncio",
            "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 60)
        asyncio.run(requests(port, args.warm, args.connections))
        before = cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGUSR1)
        asyncio.run(requests(port, args.requests, args.connections))
        proc.send_signal(signal.SIGUSR2)
        cpu = cpu_seconds(proc.pid) - before
        for _ in range(200):
            if out.exists() and out.stat().st_size:
                break
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)
    return pstats.Stats(str(out)), cpu


def inclusive(stats: pstats.Stats, path: str, function: str) -> float:
    """Seconds inside `function` of `path` (only under `caller` if given as "f<-caller")."""
    name, _, caller = function.partition("<-")
    total = 0.0
    for (file, _, func), (_, _, _, ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if not file.endswith(path) or func.rsplit(".", 1)[-1] != name:
            continue
        if not caller:
            total += ct
            continue
        total += sum(v[3] for k, v in callers.items() if k[2].rsplit(".", 1)[-1] == caller)
    return total


def report_parts(stats: pstats.Stats, cpu: float, n: int) -> None:
    print(
        f"\nwhere the time goes: cProfile over {n} requests (inclusive, us per request, and the"
        f" share of the sidecar's {cpu / n * 1e6:.0f} us of CPU per request under it)\n"
    )
    print("| part | us per request | share |\n|---|---|---|")
    seconds = {row: inclusive(stats, path, f) if path else 0.0 for row, path, f in ROWS}
    handler = seconds[ROWS[2][0]]
    beside = sum(seconds[ROWS[i][0]] for i in (3, 5, 13))  # to invocation, terminal, back
    python = seconds[ROWS[0][0]]
    for row, _, _ in ROWS:
        value = seconds[row] or handler - beside
        print(f"| {row} | {value / n * 1e6:.1f} | {value / cpu:.0%} |")
    rest = cpu - python
    print(
        f"| event loop (uvloop, the kernel) and the rest | {rest / n * 1e6:.1f} | {rest / cpu:.0%} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=3200)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds counted with no traffic")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--no-parts", action="store_true")
    ap.add_argument("--quick", action="store_true", help="100 requests of warm-up, 200 counted")
    add_baseline_arg(ap)
    args = ap.parse_args()
    if args.quick:
        args.warm, args.requests, args.top, args.idle = 100, 200, 5, 2
    require_tools("valgrind", "nginx")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        upstream = free_port()
        procs = [start_nginx(tmp, port=upstream)]
        procs.append(publish_upstream(tmp / "registry", upstream))
        registry = f"file://{tmp}/registry?poll=60"
        try:
            trees = {"this tree": None}
            if args.baseline_src:
                trees["baseline"] = args.baseline_src
            counts = {name: count(tmp, registry, src, args) for name, src in trees.items()}
            profile = None if args.no_parts else profiled(tmp, registry, args)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
        report(counts, args)
        top(Path(counts["this tree"]["dump"]), args.requests, args.top)
        if profile is not None:
            report_parts(*profile, args.requests)


def report(counts: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    print(f"{args.requests} requests counted after {args.warm}, {args.connections} keep-alive "
          "connections, one request in flight each")  # fmt: skip
    print("\n| tree | instructions per request | less the idle rate | idle M/s | errors |")
    print("|---|---|---|---|---|")
    for name, c in counts.items():
        print(f"| {name} | {c['raw']:,.0f} | {c['net']:,.0f} | {c['idle'] / 1e6:.2f} "
              f"| {c['errors']:.0f} |")  # fmt: skip
    print(f"\n| sidecar, instructions per proxied request | {counts['this tree']['raw']:,.0f} |")


if __name__ == "__main__":
    main()
