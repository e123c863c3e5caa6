"""Instructions per proxied unary gRPC call (or h2c GET) in the sidecar, counted by callgrind.

    .venv/bin/python benchmarks/grpc_instructions.py [--warm 1000] [--calls 2000] [--top 25]
    .venv/bin/python benchmarks/grpc_instructions.py --baseline-src /work/base/src
    .venv/bin/python benchmarks/grpc_instructions.py --h2c     # plain GET over h2c instead
    .venv/bin/python benchmarks/grpc_instructions.py --quick   # 100 + 200 calls: a smoke run
    .venv/bin/python benchmarks/grpc_instructions.py --opcodes # bytecodes per Python function

Timings on a shared 2-core machine swing by 1.5-2x between runs; instruction counts repeat
within about 1 %, so they judge a change to the sidecar's HTTP/2 path. The sidecar (asyncio +
uvloop, one outbound gRPC listener, the file registry, the whole outbound chain, nginx behind
it as `grpc.py --upstream nginx` starts it) runs under `valgrind --tool=callgrind
--instr-atstart=no`. A client outside callgrind (h2, the reference codec) opens
`--connections` connections (h2load's `-c10 -m10` of `grpc.py`) and sends SayHello as h2load
does, in rounds: each connection opens `--window` streams, and the next round starts once all
of them were answered (free-running streams made the count swing 2 % between runs with the
number of frames each wake-up batched). It warms the sidecar with `--warm` calls, then
counts exactly `--calls` on the same connections (`callgrind_control -i on` / `off`): as
`bolt_instructions.py --steady`, the count holds no connection set-up. Callgrind slows the
process about 50x but not the clock, so the policy timeout is 600 s and the work the sidecar
does by the clock is parked (`http1_instructions.py`'s memory checks; the registry's poll).
Every call must answer 200 (and grpc-status 0). The count is the process's own
instructions, not the kernel's. Prints the count per call, then the top entries of this
tree's dump, self and inclusive (callgrind's entries are the interpreter's C functions).
`--baseline-src DIR` counts a sidecar run from another checkout's `src/` in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import opcode_count
from bolt_instructions import HERE, instrument, top, total_of
from http1_instructions import PARKED
from netutil import add_baseline_arg, free_port, require_tools, src_env, wait_port

# grpc.py's nginx server block and registry publisher, loaded under another name: as `grpc`
# it would shadow grpcio.
_spec = importlib.util.spec_from_file_location("grpc_benchmark", HERE / "grpc.py")
assert _spec is not None and _spec.loader is not None
grpc_benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grpc_benchmark)

HELLO = b"\x0a\x05world"  # HelloRequest(name="world")
REPLY = b"\x0a\x16Hello world from nginx"  # HelloReply(message=...), as grpc.py's nginx serves
FRAMED = b"\x00" + len(HELLO).to_bytes(4, "big") + HELLO


def request_head(port: int, h2c: bool) -> list[tuple[bytes, bytes]]:
    """The fields h2load sends for `grpc.py`'s unary SayHello (or its h2c GET)."""
    head = [(b":scheme", b"http"), (b":authority", f"127.0.0.1:{port}".encode())]
    if h2c:
        return [(b":method", b"GET"), (b":path", b"/"), *head,
                (b"user-agent", b"h2load nghttp2/1.59.0"), (b"x-sofamesh-service", b"bench")]  # fmt: skip
    return [(b":method", b"POST"), (b":path", grpc_benchmark.PATH.encode()), *head,
            (b"user-agent", b"h2load nghttp2/1.59.0"), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"), (b"content-length", str(len(FRAMED)).encode())]  # fmt: skip


class _Caller(asyncio.Protocol):
    """One HTTP/2 connection's streams, `window` at a time while `state["left"]` lasts."""

    def __init__(self, head: list[tuple[bytes, bytes]], window: int, state: dict[str, int],
                 finished: asyncio.Event) -> None:  # fmt: skip
        self.head, self.window, self.state, self.finished = head, window, state, finished
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
        self.callers: list[_Caller] = []  # every connection of the run, this one too
        self.grpc = any(name == b"te" for name, _ in head)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self._flush()

    def start(self, n: int) -> None:
        for _ in range(min(n, self.state["left"])):
            self.state["left"] -= 1
            self.state["round"] += 1
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(sid, self.head, end_stream=not self.grpc)
            if self.grpc:
                self.conn.send_data(sid, FRAMED, end_stream=True)
        self._flush()

    def _flush(self) -> None:
        if self.transport is not None:
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        ended = 0
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.state["errors"] += dict(event.headers)[b":status"] != b"200"
            elif isinstance(event, h2.events.TrailersReceived):
                self.state["errors"] += dict(event.headers).get(b"grpc-status") != b"0"
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended += 1
            elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                self.state["errors"] += 1
                ended += isinstance(event, h2.events.StreamReset)
        self.state["done"] += ended
        if self.state["done"] >= self.state["n"]:
            self.finished.set()
        self.state["round"] -= ended
        if self.state["round"] <= 0:  # every connection's window answered: the next round
            for caller in self.callers:
                caller.start(self.window)


async def phases(port: int, counts: list[int], args: argparse.Namespace) -> list[int]:
    """`counts[0]` calls to warm up, then `counts[1]` instrumented, on the same connections;
    the errors of each phase."""
    head, state = request_head(port, args.h2c), {"n": 0, "left": 0, "done": 0, "errors": 0,
                                                 "round": 0}  # fmt: skip
    finished = asyncio.Event()
    loop = asyncio.get_running_loop()
    callers = []
    for _ in range(args.connections):
        _, caller = await loop.create_connection(
            lambda: _Caller(head, args.window, state, finished), "127.0.0.1", port
        )
        callers.append(caller)
    for caller in callers:
        caller.callers = callers
    errors = []
    for i, n in enumerate(counts):
        if i and not args.profile:
            args.switch(args.pid, True)
        state.update(n=n, left=n, done=0, errors=0, round=0)
        finished.clear()
        for caller in callers:
            caller.start(args.window)
        await finished.wait()
        errors.append(state["errors"])
    if not args.profile:
        args.switch(args.pid, False)
    for caller in callers:
        assert caller.transport is not None
        caller.transport.close()
    return errors


def start_sidecar(tmp: Path, src: str | None, out: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The sidecar under callgrind (or cProfile, for a dump named `*.prof`; the bytecode
    counter, `opcode_count.py`, for `*.json`), once it listens."""
    port = free_port()
    cfg = tmp / f"sidecar-{port}.json"
    cfg.write_text(json.dumps({
        "app": "bench", "registry": f"file://{tmp}/registry?poll=60",
        "upgrade_socket": str(tmp / f"{port}.sock"), "policy": {"timeout": 600},
        "outbound": [{"protocol": "grpc", "listen": f"127.0.0.1:{port}"}], **PARKED,
    }))  # fmt: skip
    argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--backend", "asyncio",
            "--log-level", "WARNING"]  # fmt: skip
    env = src_env(src)
    if out.suffix == ".prof":
        argv[1:1] = ["-m", "cProfile", "-o", str(out)]
    elif out.suffix == ".json":
        argv[1:2] = [str(HERE / "opcode_count.py")]  # in place of `-m`
        env = {**(env or os.environ), "OPCODES_OUT": str(out)}
    else:
        argv[:0] = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={out}"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, 300)
    return proc, port


def _signal(pid: int, on: bool) -> None:
    """The bytecode counter's switch (`opcode_count.py`): on, or off and written out."""
    os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)


def opcodes(tmp: Path, args: argparse.Namespace) -> None:
    """This tree's sidecar under the bytecode counter: the Python functions that run the
    most bytecodes per counted call."""
    out = tmp / "opcodes.json"
    sidecar, port = start_sidecar(tmp, args.src, out)
    try:
        args.pid, args.switch = sidecar.pid, _signal
        errors = sum(asyncio.run(phases(port, [args.warm, args.calls], args)))
        for _ in range(600):  # written by the signal's handler, between two bytecodes
            if out.exists() and out.stat().st_size:
                break
            time.sleep(0.1)
    finally:
        sidecar.terminate()
        sidecar.wait(120)
    print(f"{args.calls} calls counted after {args.warm}, {errors} errors")
    opcode_count.report(out, args.calls, args.top)


def count(tmp: Path, src: str | None, args: argparse.Namespace) -> tuple[float, int, Path]:
    """One tree's instructions per counted call, its errors and its dump."""
    out = tmp / f"callgrind-{'baseline' if src else 'this'}.out"
    sidecar, port = start_sidecar(tmp, src, out)
    try:
        args.pid, args.switch = sidecar.pid, instrument
        errors = sum(asyncio.run(phases(port, [args.warm, args.calls], args)))
    finally:
        sidecar.terminate()
        sidecar.wait(120)  # it writes its dump as it exits
    total, dump = total_of(out)
    return total / args.calls, errors, dump


def profile(tmp: Path, args: argparse.Namespace) -> None:
    """This tree's sidecar under cProfile instead: the Python functions with the most
    self and inclusive time, with their calls per proxied call (warm-up included)."""
    out = tmp / "sidecar.prof"
    sidecar, port = start_sidecar(tmp, args.src, out)
    try:
        args.pid = sidecar.pid
        errors = sum(asyncio.run(phases(port, [args.warm, args.calls], args)))
    finally:
        sidecar.terminate()
        sidecar.wait(120)  # cProfile writes its statistics as the sidecar exits
    if args.keep is not None:
        shutil.copyfile(out, args.keep)
    stats = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    n = args.warm + args.calls
    every = sum(tt for _, _, tt, _, _ in stats.values())
    print(f"{n} calls profiled, {errors} errors; cProfile's time shares inflate short functions")
    for title, key in (("self", 2), ("inclusive", 3)):
        print(f"\n| calls per call | {title} share | function |\n|---|---|---|")
        ranked = sorted(stats.items(), key=lambda kv: -kv[1][key])[: args.top]
        for (file, line, func), row in ranked:
            where = f"{Path(file).name}:{line} {func}" if line else func
            print(f"| {row[1] / n:.2f} | {row[key] / every:.1%} | {where} |")


def inclusive(dump: Path, calls_: int, n: int) -> None:
    """The `n` entries with the most inclusive instructions, per call, below the loop's own
    and the interpreter's recursive ones (the C-API entries: `__init__`s, allocations...)."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line for line in text.splitlines() if "(" in line and line.strip()[:1].isdigit()]
    print("\n| inclusive instructions per call | function |\n|---|---|")
    # Recursive entries ("'2") and the loop's frames count every call many times over.
    rows = [r for r in rows if "'" not in r and "???" not in r and "uvloop" not in r]
    for line in [r for r in rows if "PROGRAM TOTALS" not in r][:n]:
        counted, rest = line.split(maxsplit=1)
        where = rest.split(")", 1)[-1].strip().split(" [")[0].rsplit("/", 1)[-1]
        print(f"| {int(counted.replace(',', '')) / calls_:,.0f} | {where} |")


def start_upstream(tmp: Path) -> list[subprocess.Popen[bytes]]:
    """nginx answering SayHello over h2c (and GET over HTTP/1.1), published in the registry."""
    www = tmp / "www" / "helloworld.Greeter"
    www.mkdir(parents=True)
    (www / "SayHello").write_bytes(b"\x00" + len(REPLY).to_bytes(4, "big") + REPLY)
    ngx_grpc, ngx_http = free_port(), free_port()
    servers = grpc_benchmark.GRPC_SERVER.format(dir=tmp, grpc_port=ngx_grpc)
    procs = [grpc_benchmark.netutil.start_nginx(tmp, servers, port=ngx_http, grpc_port=ngx_grpc)]
    endpoints = [(grpc_benchmark.SERVICE, ngx_grpc, "grpc"), ("bench", ngx_http, "http")]
    procs.append(grpc_benchmark.publish(tmp / "registry", endpoints))
    for port in (ngx_grpc, ngx_http):
        wait_port(port)
    return procs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--h2c", action="store_true", help="count h2c GETs (HTTP/1.1 nginx behind)")
    ap.add_argument("--src", help="run this tree's sidecar from another checkout's src/")
    ap.add_argument("--keep", type=Path, help="copy this tree's callgrind dump here")
    ap.add_argument("--profile", action="store_true",
                    help="no count: this tree's sidecar under cProfile, its top Python functions")  # fmt: skip
    ap.add_argument("--opcodes", action="store_true",
                    help="bytecodes per Python function instead (opcode_count.py)")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="100 calls of warm-up, 200 counted")
    add_baseline_arg(ap)
    args = ap.parse_args()
    if args.quick:
        args.warm, args.calls, args.top = 100, 200, 5
    require_tools("valgrind", "nginx")
    if args.opcodes or args.profile:  # this tree alone, under the bytecode counter or cProfile
        with tempfile.TemporaryDirectory() as d:
            procs = start_upstream(Path(d))
            try:
                (opcodes if args.opcodes else profile)(Path(d), args)
            finally:
                grpc_benchmark.stop_all(procs)
        return
    trees = {"this tree": args.src}
    if args.baseline_src:
        trees["baseline"] = args.baseline_src
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        procs = start_upstream(tmp)
        try:
            counts = {name: count(tmp, src, args) for name, src in trees.items()}
        finally:
            grpc_benchmark.stop_all(procs)
        report(counts, args)
        dump = counts["this tree"][2]
        if args.keep is not None:
            shutil.copyfile(dump, args.keep)
        top(dump, args.calls, args.top)
        inclusive(dump, args.calls, args.top)


def report(counts: dict[str, tuple[float, int, Path]], args: argparse.Namespace) -> None:
    what = "h2c GET" if args.h2c else "unary gRPC call"
    print(f"{args.calls} calls counted after {args.warm}, {args.connections} connections x "
          f"{args.window} streams in flight, nginx upstream; instructions per {what}")  # fmt: skip
    print("\n| tree | instructions per call | errors |\n|---|---|---|")
    for name, (per_call, errors, _) in counts.items():
        print(f"| {name} | {per_call:,.0f} | {errors} |")
    print(f"\n| sidecar, instructions per proxied call | {counts['this tree'][0]:,.0f} |")


if __name__ == "__main__":
    main()
