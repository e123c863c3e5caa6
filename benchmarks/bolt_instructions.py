"""Instructions per proxied Bolt call in the sidecar, counted by callgrind.

    .venv/bin/python benchmarks/bolt_instructions.py [--warm 1000] [--calls 2000] [--top 25]
    .venv/bin/python benchmarks/bolt_instructions.py --steady  # counted on warm connections
    .venv/bin/python benchmarks/bolt_instructions.py --quick   # 100 + 200 calls: a smoke run

Timings on a shared 2-core machine swing by 2x between runs; instruction counts repeat
within about 1 %, so they judge a change to the sidecar's Bolt path. The sidecar (asyncio +
uvloop, one outbound Bolt listener, the file registry, the SDK provider of `bolt.py` behind
it) runs under `valgrind --tool=callgrind --instr-atstart=no`; it is warmed with `--warm`
calls of `bolt.py`'s request (echo of a 1 KB String as Java SOFARPC frames it, with a 600 s
timeout so that the slowed process answers every call), then instrumented (`callgrind_control
-i on` / `off`) for exactly `--calls` calls, `--connections` x `--window` in flight, on
connections of their own (as the first rounds counted: the count then holds 16
connections' set-up and teardown, about 3.9 million instructions each), or with
`--steady` on the warm-up's connections, as `bolt.py`'s long runs spend their CPU. The
count is the process's own instructions, not the kernel's: system calls avoided show in
`bolt.py`'s CPU column instead. Prints the count per call and the top entries (inclusive of
nothing: self instructions per function, from `callgrind_annotate`).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bolt import _RESPONSE, request_template
from netutil import free_port, src_env, wait_port

HERE = Path(__file__).resolve().parent
_TIMEOUT_OFFSET = 10  # of a Bolt v1 request's fixed header


class _Caller(asyncio.Protocol):
    """One connection keeping `window` calls in flight until `state["left"]` runs out."""

    def __init__(
        self, template: bytearray, window: int, state: dict[str, int], finished: asyncio.Event
    ) -> None:
        self.template, self.window, self.state, self.finished = template, window, state, finished
        self.buf = bytearray()
        self.rid = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _send(self, n: int) -> None:
        out = []
        for _ in range(min(n, self.state["left"])):
            self.state["left"] -= 1
            self.rid += 1
            struct.pack_into(">i", self.template, 5, self.rid)
            out.append(bytes(self.template))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = done = 0
        while len(self.buf) - pos >= 20:
            status, cl, hl, bl = _RESPONSE.unpack_from(self.buf, pos)[6:]
            total = 20 + cl + hl + bl
            if len(self.buf) - pos < total:
                break
            self.state["errors"] += status != 0
            pos += total
            done += 1
        del self.buf[:pos]
        self.state["done"] += done
        if self.state["done"] >= self.state["n"]:
            self.finished.set()
        self._send(done)


async def calls(port: int, n: int, connections: int, window: int) -> int:
    """Make exactly `n` calls through `port` on new connections; the number answered with
    an error."""
    return (await phases(port, [n], connections, window, lambda: None))[0]


async def phases(
    port: int, counts: list[int], connections: int, window: int, between: Callable[[], None]
) -> list[int]:
    """`counts[i]` calls in phase i, all on the same connections (opened before the first),
    `between()` run before each later phase; the errors of each phase."""
    template = bytearray(request_template())
    struct.pack_into(">i", template, _TIMEOUT_OFFSET, 600_000)
    loop = asyncio.get_running_loop()
    state = {"n": 0, "left": 0, "done": 0, "errors": 0}
    finished = asyncio.Event()
    callers = []
    for _ in range(connections):
        _, caller = await loop.create_connection(
            lambda: _Caller(template, window, state, finished), "127.0.0.1", port
        )
        callers.append(caller)
    errors = []
    for i, n in enumerate(counts):
        if i:
            between()
        state.update(n=n, left=n, done=0, errors=0)
        finished.clear()
        for caller in callers:
            caller._send(window)
        await finished.wait()
        errors.append(state["errors"])
    for caller in callers:
        assert caller.transport is not None
        caller.transport.close()
    return errors


def start_provider(tmp: Path, registry: str, src: str | None) -> subprocess.Popen[bytes]:
    port = free_port()
    argv = [sys.executable, str(HERE / "bolt.py"), "provider", "--port", str(port),
            "--registry", registry]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=src_env(src))
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    return proc


def start_sidecar(
    tmp: Path, registry: str, out: Path, src: str | None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = tmp / "sidecar.json"
    cfg.write_text(json.dumps({
        "app": "bench", "registry": registry, "upgrade_socket": str(tmp / "upgrade.sock"),
        "outbound": [{"protocol": "bolt", "listen": f"127.0.0.1:{port}"}],
    }))  # fmt: skip
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            sys.executable, "-m", "sofamesh.sidecar", "-c", str(cfg), "--backend", "asyncio",
            "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=src_env(src), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port, 300)
    return proc, port


def instrument(pid: int, on: bool) -> None:
    argv = ["callgrind_control", "-i", "on" if on else "off", str(pid)]
    subprocess.run(argv, check=True, capture_output=True)


def on(pid: int) -> Callable[[], None]:
    return lambda: instrument(pid, True)


def total_of(out: Path) -> tuple[int, Path]:
    """The largest count among callgrind's dumps (the one with the counted phase)."""
    best, where = 0, out
    for name in glob.glob(f"{out}*"):
        for line in Path(name).read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")) and int(line.split()[1]) > best:
                best, where = int(line.split()[1]), Path(name)
    return best, where


def top(dump: Path, calls_: int, n: int) -> None:
    """The `n` functions with the most self instructions, per call."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dump)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line for line in text.splitlines() if "(" in line and line.strip()[:1].isdigit()]
    print("\n| instructions per call | share | function |\n|---|---|---|")
    for line in [r for r in rows if "PROGRAM TOTALS" not in r][:n]:
        count, rest = line.split(maxsplit=1)
        share, func = rest.split(")", 1) if rest.startswith("(") else ("", rest)
        where = func.strip().split(" [")[0].rsplit("/", 1)[-1]
        print(f"| {int(count.replace(',', '')) / calls_:,.0f} | {share.strip('( ')} | {where} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--src", help="run the sidecar from another checkout's src/")
    ap.add_argument("--quick", action="store_true", help="100 calls of warm-up, 200 counted")
    ap.add_argument(
        "--steady", action="store_true",
        help="count calls on the warm-up's connections (no connection set-up in the count)",
    )  # fmt: skip
    ap.add_argument("--keep", type=Path, help="copy callgrind's dump of the counted phase here")
    args = ap.parse_args()
    if args.quick:
        args.warm, args.calls, args.top, args.steady = 100, 200, 5, True
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        registry = f"file://{tmp}/registry?poll=0.1"
        out = tmp / "callgrind.out"
        procs = [start_provider(tmp, registry, args.src)]
        try:
            sidecar, port = start_sidecar(tmp, registry, out, args.src)
            procs.append(sidecar)
            shape = (args.connections, args.window)
            if args.steady:  # the counted calls on the warm-up's connections
                counts = [args.warm, args.calls]
                errors = sum(asyncio.run(phases(port, counts, *shape, on(sidecar.pid))))
            else:
                errors = asyncio.run(calls(port, args.warm, *shape))
                instrument(sidecar.pid, True)
                errors += asyncio.run(calls(port, args.calls, *shape))
            instrument(sidecar.pid, False)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(120)  # the sidecar writes its dump as it exits
        total, dump = total_of(out)
        if args.keep is not None:
            shutil.copyfile(dump, args.keep)
        print(f"{args.calls} calls, {args.connections} connections x {args.window} in flight, "
              f"{errors} errors")  # fmt: skip
        print(f"| sidecar, instructions per proxied call | {total / args.calls:,.0f} |")
        top(dump, args.calls, args.top)


if __name__ == "__main__":
    main()
