"""One hostile client against the sidecar and against Envoy 1.40, side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/attack.py [--target both] [--only NAME]
    PYTHONPATH=src .venv/bin/python benchmarks/attack.py --quick   # each attack small and brief

Each attack runs against a fresh proxy process (benchmarks/attack_targets.py: a sofamesh
sidecar on asyncio + uvloop and, with `--backend both` (the default but with --quick), one
on trio; and Envoy `--concurrency 1` with the same doors; Bolt through Envoy's tcp_proxy)
in front of one counting upstream. Meanwhile a well-behaved HTTP/1.1 client calls through
the same process every 20 ms on its own keep-alive connection. For each attack the table
says: whether the process is still up and serving afterwards; that client's p50 / p99
before and during the attack (and its failed calls); the proxy's RSS before, at its peak
during, and 1 s after; upstream requests per attack request; and how the attacker was cut
off. Prints Markdown (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attack_clients as ac
from attack_targets import (
    ENVOY,
    H1_SERVICE,
    PAIR_SERVICE,
    RssSampler,
    Target,
    Upstream,
    start_envoy,
    start_sofamesh,
    start_upstream,
)
from netutil import add_backend_arg, add_baseline_arg, backends_of, src_env

# name -> (what it does, full size, quick size); sizes are attack arguments
ATTACKS: dict[str, tuple[str, Callable[[Target, bool], ac.Outcome]]] = {
    "rapid_reset": ("HTTP/2: 20,000 open-then-reset streams",
                    lambda t, q: ac.rapid_reset(t, 2_000 if q else 20_000)),
    "ping_flood": ("HTTP/2: PING flood (up to 1,000,000 frames, 5 s), never reading",
                   lambda t, q: ac.flood(t, "ping", 100_000 if q else 1_000_000, 1 if q else 5)),
    "settings_flood": ("HTTP/2: SETTINGS flood (up to 1,000,000 frames, 5 s), never reading",
                       lambda t, q: ac.flood(t, "settings", 100_000 if q else 1_000_000, 1 if q else 5)),
    "window_update_flood": ("HTTP/2: 1-byte WINDOW_UPDATE flood (up to 1,000,000, 5 s), never reading",
                            lambda t, q: ac.flood(t, "window_update", 100_000 if q else 1_000_000, 1 if q else 5)),
    "slow_readers": ("HTTP/1.1: 30 readers of a 10 MiB response read nothing for 10 s",
                     lambda t, q: ac.slow_readers(t, 5 if q else 30, 1 if q else 10)),
    "zero_window": ("HTTP/2: 40 streams of a 10 MiB response, stream window 0, 10 s",
                    lambda t, q: ac.zero_window(t, 5 if q else 40, 1 if q else 10)),
    "stalled_bolt": ("Bolt: 20 frames of 7 MiB (the limit is 8), each stopped 1 byte short, 10 s",
                     lambda t, q: ac.stalled_bolt(t, 3 if q else 20, (2 if q else 7) << 20, 1 if q else 10)),
    "peek_bomb": ("Bolt: 1,100,000 class definitions (6.3 MiB) before the request, no method header",
                  lambda t, q: ac.peek_bomb(t, 100_000 if q else 1_100_000)),
    "cluster_explosion": ("HTTP/1.1: 3,000 made-up Host names",
                          lambda t, q: ac.cluster_explosion(t, 200 if q else 3_000, 0.5 if q else 2)),
    "idle_lockout": ("TCP: 10,000 idle connections, then 15 fresh clients",
                     lambda t, q: ac.idle_lockout(t, 1_000 if q else 10_000)),
    "frozen_provider": ("HTTP/1.1: one of two providers SIGSTOPped for 8 s under steady calls",
                        lambda t, q: ac.frozen_provider(t, 0.3 if q else 2, 1 if q else 8)),
}  # fmt: skip


class Probe:
    """A well-behaved client: GET / every 20 ms on one keep-alive connection (5 s limit),
    reconnecting after a failure; latencies in ms, failures counted."""

    def __init__(self, port: int) -> None:
        self.port, self.lat, self.failed = port, list[float](), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sock: socket.socket | None = None

    def _call(self) -> None:
        if self._sock is None:
            self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self._sock.sendall(ac.http_get("/probe", H1_SERVICE))
        got = b""
        while not got.endswith(b"ok"):  # both upstream answers end with "ok"
            chunk = self._sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(got[:40].decode(errors="replace"))

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            started = time.monotonic()
            try:
                self._call()
                self.lat.append((time.monotonic() - started) * 1000)
            except OSError:
                self.failed += 1
                if self._sock is not None:
                    self._sock.close()
                self._sock = None

    def run_for(self, seconds: float) -> None:
        self._thread.start()
        time.sleep(seconds)

    def stop(self) -> tuple[list[float], int]:
        self._stop.set()
        self._thread.join()
        if self._sock is not None:
            self._sock.close()
        return self.lat, self.failed


def wait_serving(target: Target, timeout: float = 20.0) -> None:
    """Return once `target` answers the probe's call (it has discovered the upstream)."""
    deadline = time.monotonic() + timeout
    probe = Probe(target.h1)
    while True:
        try:
            probe._call()
            return
        except OSError:
            probe._sock = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # another process's discovery: polled, with a deadline


def pct(lat: list[float], q: float) -> str:
    if not lat:
        return "-"
    s = sorted(lat)
    return f"{s[min(len(s) - 1, int(len(s) * q))]:.1f}"


def run_one(name: str, target: Target, upstream_count: Callable[[], int], quick: bool) -> str:
    """One attack against one fresh target: its table row."""
    before_probe = Probe(target.h1)
    before_probe.run_for(0.2 if quick else 2)
    lat0, _ = before_probe.stop()
    rss0, up0 = target.rss_mib(), upstream_count()
    probe = Probe(target.h1)
    probe.run_for(0)
    with RssSampler(target.proc.pid) as rss:
        outcome = ATTACKS[name][1](target, quick)
    lat1, failed = probe.stop()
    time.sleep(0.2 if quick else 1)
    amp = f"{(upstream_count() - up0) / outcome.requests:.2f}" if outcome.requests else "-"
    after = Probe(target.h1)
    after.run_for(0.2 if quick else 0.3)
    lat2, failed2 = after.stop()
    up = target.alive() and bool(lat2) and not failed2
    return (
        f"| {name} | {target.name} | {'yes' if up else 'NO'} | {pct(lat0, 0.5)} / {pct(lat0, 0.99)} "
        f"| {pct(lat1, 0.5)} / {pct(lat1, 0.99)} ({len(lat1)} ok, {failed} failed) "
        f"| {rss0:.0f} / {rss.peak:.0f} / {target.rss_mib():.0f} | {amp} | {outcome.cutoff} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="each attack small and brief")
    ap.add_argument("--only", choices=sorted(ATTACKS), action="append", help="run only these")
    ap.add_argument("--target", choices=["sofamesh", "envoy", "both"], default="both")
    add_baseline_arg(ap)
    add_backend_arg(ap)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # stop the proxies too
    names = args.only or list(ATTACKS)
    sidecars = [f"sofamesh ({b})" if b != "asyncio" else "sofamesh" for b in backends_of(args)]
    targets = {"sofamesh": sidecars, "envoy": ["envoy"], "both": [*sidecars, "envoy"]}[args.target]
    if "envoy" in targets and not ENVOY.exists():
        targets.remove("envoy")
        print(f"(no Envoy at {ENVOY}: sofamesh only)\n")
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"{'--quick: small, brief attacks' if args.quick else 'full sizes'}\n")  # fmt: skip
    for name in names:
        print(f"- {name}: {ATTACKS[name][0]}")
    print("\n| attack | target | up after | p50 / p99 ms before | p50 / p99 ms during "
          "| RSS MiB before / peak / after | upstream req per attack req | cut off |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        up = start_upstream(Path(d))
        up2 = start_upstream(Path(d), services=(PAIR_SERVICE,))  # the pair's other provider
        running: dict[str, Target] = {}
        try:
            if args.quick:  # one target of each kind serves every attack: start them now
                running = {which: start(which, Path(d), up, up2, args) for which in targets}
            for u in (up, up2):
                u.wait_up()
            for target in running.values():
                wait_serving(target)
            for name in names:
                for which in targets:
                    target = running.get(which)
                    if target is None or not target.alive() or not args.quick:
                        if target is not None:
                            target.stop()
                        target = running[which] = start(which, Path(d), up, up2, args)
                        wait_serving(target)  # "before" measures serving, not start-up
                    print(run_one(name, target, up.count, args.quick), flush=True)
        finally:
            for target in running.values():
                target.stop()
            for u in (up, up2):
                u.proc.send_signal(signal.SIGCONT)  # in case an attack was cut short
                u.proc.terminate()
                u.proc.wait(10)


def start(which: str, tmp: Path, up: Upstream, up2: Upstream, args: argparse.Namespace) -> Target:
    """A fresh proxy for each attack (with --quick, one per target for all attacks)."""
    if which == "envoy":
        target = start_envoy(tmp, up, up2)
    else:
        backend = "trio" if which == "sofamesh (trio)" else "asyncio"
        target = start_sofamesh(tmp, up, src_env(args.baseline_src), backend)
    target.pair = up2.proc
    return target


if __name__ == "__main__":
    try:
        main()
    except subprocess.TimeoutExpired as e:
        raise SystemExit(f"a process did not stop: {e}") from e
