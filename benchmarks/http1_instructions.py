"""Instructions per proxied HTTP/1.1 request in the sidecar, counted by callgrind, and where
they go, step by step.

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

Then, unless `--no-parts`, where they go: the steps of a request that do no I/O (parse
the request, map it to an invocation and back, encode it, parse the response, map it back,
encode it) are counted on their own (`http1_steps.py`, `--steps` calls each under callgrind,
counters zeroed and dumped around each step), and the rest of the request's count is what
the server loop, the outbound chain, the pool, the stream and the event loop spend.
`--baseline-src DIR` counts a sidecar run from another checkout's `src/` too, in the same
run (`--keep-dump PATH` keeps this tree's dump for `callgrind_annotate`).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bolt_instructions import HERE, instrument
from http_proxy import publish_upstream
from netutil import (
    add_baseline_arg,
    free_port,
    require_tools,
    src_env,
    start_nginx,
    wait_port,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"  # what `wrk -H 'Host: bench'` sends
# With --vary, each request carries a field of its own (as a request id or trace header
# would), so no request's head repeats its connection's last one.
VARY = 0
VARIED = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Request-Id: %08d\r\n\r\n"
PARKED = {"overload": {"check_interval": 3600, "trim_heap": False}}
ACCESS_LOG = False  # --access-log: the listener writes Envoy's default line per request


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
            vary = self.state["vary"]
            self.transport.write(VARIED % self.state["left"] if vary else REQUEST)

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
    state = {"n": n, "left": n, "done": 0, "errors": 0, "vary": VARY}
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
    listener: dict[str, object] = {"protocol": "http", "listen": f"127.0.0.1:{port}"}
    if ACCESS_LOG:
        listener["access_log"] = {"path": str(tmp / f"access-{name}.log")}
    cfg.write_text(json.dumps({
        "app": "bench", "registry": registry, "upgrade_socket": str(tmp / f"{port}.sock"),
        "outbound": [listener], **PARKED,
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


# The client requests `http1_steps.py` counts its steps with, as a C library it calls.
STEPS_LIB = """
#include <valgrind/callgrind.h>
void zero(void) { CALLGRIND_ZERO_STATS; }
void dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


def steps(tmp: Path, src: str | None, n: int) -> dict[str, float]:
    """Instructions per call of each I/O-free step of a proxied request (`http1_steps.py`)."""
    lib = tmp / "steps.so"
    if not lib.exists():
        (tmp / "steps.c").write_text(STEPS_LIB)
        gcc = ["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(tmp / "steps.c")]
        subprocess.run(gcc, check=True)
    out = tmp / f"steps-{'baseline' if src else 'this'}.out"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
            str(HERE / "http1_steps.py"), str(lib), str(n)]  # fmt: skip
    subprocess.run(argv, env=src_env(src), check=True, capture_output=True)
    counts: dict[str, float] = {}
    for name in sorted(glob.glob(f"{out}.*"), key=lambda n: int(n.rsplit(".", 1)[1])):
        text = Path(name).read_text(errors="replace")
        step = text.split("desc: Trigger: Client Request: ", 1)[1].split("\n", 1)[0]
        if step != "warm-up":
            counts[step] = int(text.split("\ntotals: ", 1)[1].split()[0]) / n
    loop = counts.pop("nothing (the loop itself)")
    return {step: count - loop for step, count in counts.items()}


def report_steps(counts: dict[str, dict[str, float]], split: dict[str, dict[str, float]]) -> None:
    """Where the instructions of a request go: the I/O-free steps, then the rest."""
    trees = list(split)
    print("\n| step (instructions per request) | " + " | ".join(trees) + " |")
    print("|---|" + "---|" * len(trees))
    names = list(split[trees[0]])
    for name in names:
        print(f"| {name} | " + " | ".join(f"{split[t].get(name, 0):,.0f}" for t in trees) + " |")
    rest = [counts[t]["net"] - sum(split[t].values()) for t in trees]
    print("| the rest: server loop, chain, pool, stream I/O, event loop | "
          + " | ".join(f"{r:,.0f}" for r in rest) + " |")  # fmt: skip
    print("| all (less the idle rate) | "
          + " | ".join(f"{counts[t]['net']:,.0f}" for t in trees) + " |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=3200)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds counted with no traffic")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--no-parts", action="store_true", help="count the whole request only")
    ap.add_argument("--steps", type=int, default=2000, help="calls of each step counted")
    ap.add_argument("--keep-dump", metavar="PATH", help="copy this tree's callgrind dump there")
    ap.add_argument("--quick", action="store_true", help="100 requests of warm-up, 200 counted")
    ap.add_argument(
        "--vary", action="store_true", help="a request id field in each request: no head repeats"
    )
    ap.add_argument(
        "--access-log", action="store_true", help="the listener writes an access log to a file"
    )
    add_baseline_arg(ap)
    args = ap.parse_args()
    global VARY, ACCESS_LOG
    VARY, ACCESS_LOG = int(args.vary), args.access_log
    if args.quick:
        args.warm, args.requests, args.top, args.idle, args.steps = 100, 200, 5, 2, 200
    require_tools("valgrind", "nginx", "gcc")
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
            split = (
                {}
                if args.no_parts
                else {name: steps(tmp, src, args.steps) for name, src in trees.items()}
            )
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
        if args.keep_dump:
            shutil.copy(counts["this tree"]["dump"], args.keep_dump)
        report(counts, args)
        if ACCESS_LOG:  # written as each sidecar drained: a line per request, warm-up included
            for name in trees:
                log = tmp / f"access-{'baseline' if trees[name] else 'this'}.log"
                lines = len(log.read_text().splitlines()) if log.exists() else 0
                print(f"| {name}, access log lines | {lines:,} |")
        top(Path(counts["this tree"]["dump"]), args.requests, args.top)
        if split:
            report_steps(counts, split)


def top(dump: Path, requests_: int, n: int) -> None:
    """The `n` functions with the most self instructions, per request, and their share."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # The dump's own total: callgrind_annotate's sums the summary line, which wraps round
    # once the counters were zeroed.
    total = int(dump.read_text(errors="replace").split("\ntotals: ", 1)[1].split()[0])
    rows = [line for line in text.splitlines() if "(" in line and line.strip()[:1].isdigit()]
    print("\n| instructions per request | share | function |\n|---|---|---|")
    for line in [r for r in rows if "PROGRAM TOTALS" not in r][:n]:
        count = int(line.split(maxsplit=1)[0].replace(",", ""))
        where = line.split(")", 1)[-1].strip().split(" [")[0].rsplit("/", 1)[-1]
        print(f"| {count / requests_:,.0f} | {count / total:.1%} | {where} |")


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
