"""Registry figures on loopback, etcd 3.4 and ZooKeeper 3.8 side by side.

    .venv/bin/python benchmarks/registry.py [--services 1000] [--endpoints 10] [--watchers 20]
                                            [--changes 200] [--samples 50] [--backend asyncio|trio|both]
    .venv/bin/python benchmarks/registry.py --quick   # 20 services, 2 watchers: a smoke run

For each registry, a fresh server in a temp dir (started as the tests start theirs;
ZooKeeper with forceSync=yes, as in production), then:

1. populate: `services` x `endpoints` endpoints from one publisher (`publish_many`);
2. sync: `samples` times, a *new* consumer (its own connection or session) opens
   the registry and watches one service until the snapshot holds all its
   endpoints: p50 / p99 from opening to that snapshot;
3. memory: one consumer watches every service and holds every snapshot; the
   Python heap it grew (tracemalloc, every thread), scaled to 10,000 endpoints;
4. propagation: `watchers` consumers, each a process of its own (as sidecars are),
   watch one service; the publisher publishes or unpublishes one endpoint
   `changes` times, waiting for every watcher each time; p50 / p99 of the time
   from the call to `publish` to a watcher's snapshot showing the change (one
   monotonic clock for all processes).

Prints a Markdown table per backend (paste into docs/performance.md): the publisher,
the consumers and the watcher processes on asyncio, then on trio (`--backend both`,
the default; `--quick` runs asyncio alone). The publisher, the
watchers and the server share this machine's cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import sniffio
from anyio.streams.buffered import BufferedByteReceiveStream

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netutil import add_backend_arg, backends_of  # noqa: E402
from tests.registry.servers import EtcdServer, ServerProcess, ZooKeeperServer  # noqa: E402

from sofamesh.endpoint import Endpoint  # noqa: E402
from sofamesh.registry import EtcdRegistry  # noqa: E402
from sofamesh.registry.zookeeper import ZooKeeperRegistry  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def opener(server: ServerProcess) -> Callable[[], Any]:
    hosts = [("127.0.0.1", server.port)]
    if isinstance(server, EtcdServer):
        return lambda: EtcdRegistry(hosts, workspace="bench", lease_ttl=30)
    return lambda: ZooKeeperRegistry(
        hosts, workspace="bench", session_timeout=30, register_consumers=False
    )


def service_name(i: int) -> str:
    return f"com.example.bench.Service{i:04d}"


async def populate(publisher: Any, services: int, endpoints: int) -> float:
    eps = [
        Endpoint(
            service_name(s),
            f"10.{s // 250}.{s % 250}.{e + 1}",
            20880,
            app="bench",
            version="1.0",
            weight=100,
            meta={"methods": "get,put,delete"},
        )
        for s in range(services)
        for e in range(endpoints)
    ]
    t0 = time.perf_counter()
    await publisher.publish_many(eps)
    return time.perf_counter() - t0


async def sync_times(open_reg: Callable[[], Any], args: argparse.Namespace) -> list[float]:
    times = []
    for i in range(args.samples):
        service = service_name(i * args.services // args.samples)
        t0 = time.perf_counter()
        async with open_reg() as reg, reg.watch(service) as snaps:
            async for snap in snaps:
                if len(snap) == args.endpoints:
                    break
            times.append(time.perf_counter() - t0)
    return times


async def memory_per_10k(open_reg: Callable[[], Any], args: argparse.Namespace) -> float:
    held: dict[str, Any] = {}
    done = anyio.Event()

    async def follow(reg: Any, service: str) -> None:
        async with reg.watch(service) as snaps:
            async for snap in snaps:
                held[service] = snap
                if len(held) == args.services and all(
                    len(v) == args.endpoints for v in held.values()
                ):
                    done.set()

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    async with open_reg() as reg, anyio.create_task_group() as tg:
        for s in range(args.services):
            tg.start_soon(follow, reg, service_name(s))
        with anyio.fail_after(300):
            await done.wait()
        grown = tracemalloc.get_traced_memory()[0] - before
        tg.cancel_scope.cancel()
    tracemalloc.stop()
    return grown * 10_000 / (args.services * args.endpoints)


async def watcher_process(kind: str, port: int, service: str) -> None:
    """A watching consumer in its own process: prints `<perf_counter> <ports>` per snapshot.
    (perf_counter is CLOCK_MONOTONIC on Linux, one clock for every process.)"""
    server: Any = EtcdServer if kind == "etcd" else ZooKeeperServer
    fake = server.__new__(server)
    fake.port = port
    async with opener(fake)() as reg, reg.watch(service) as snaps:
        async for snap in snaps:
            ports = ",".join(str(ep.port) for ep in snap)
            print(f"{time.perf_counter():.6f} {ports}", flush=True)


async def propagation(
    server: ServerProcess,
    publisher: Any,
    args: argparse.Namespace,
) -> list[float]:
    service = "com.example.bench.Propagation"
    await publisher.publish(Endpoint(service, "10.99.0.1", 1))
    latencies: list[float] = []
    state: dict[str, Any] = {"want": None, "t0": 0.0, "left": 0, "event": anyio.Event()}
    kind = "etcd" if isinstance(server, EtcdServer) else "zookeeper"
    backend = sniffio.current_async_library()  # each watcher on the backend of the run
    argv = [sys.executable, __file__, "--watcher", kind, str(server.port), service,
            "--backend", backend]  # fmt: skip

    async def watch(ready: anyio.Event) -> None:
        async with await anyio.open_process(argv, stderr=None) as proc:
            assert proc.stdout is not None
            lines = BufferedByteReceiveStream(proc.stdout)
            while True:
                stamp, _, ports = (await lines.receive_until(b"\n", 1 << 20)).partition(b" ")
                seen = {int(p) for p in ports.split(b",") if p}
                if 1 in seen:
                    ready.set()
                want = state["want"]
                if want is not None and want(seen):
                    latencies.append(float(stamp) - state["t0"])
                    state["left"] -= 1
                    if state["left"] == 0:
                        state["event"].set()

    async with anyio.create_task_group() as tg:
        for _ in range(args.watchers):
            ready = anyio.Event()
            tg.start_soon(watch, ready)
            with anyio.fail_after(60):
                await ready.wait()
        for k in range(args.changes):
            port, adding = 1000 + k // 2, k % 2 == 0
            state.update(
                want=lambda s, p=port, a=adding: (p in s) == a,
                left=args.watchers,
                event=anyio.Event(),
                t0=time.perf_counter(),
            )
            ep = Endpoint(service, "10.99.1.1", port)
            await (publisher.publish(ep) if adding else publisher.unpublish(ep))
            with anyio.fail_after(30):
                await state["event"].wait()
            state["want"] = None
        tg.cancel_scope.cancel()
    return latencies


async def measure(server: ServerProcess, args: argparse.Namespace) -> dict[str, str]:
    open_reg = opener(server)
    async with open_reg() as publisher:
        populate_s = await populate(publisher, args.services, args.endpoints)
        syncs = await sync_times(open_reg, args)
        memory = await memory_per_10k(open_reg, args)
        lat = await propagation(server, publisher, args)
    ms = 1000.0
    return {
        f"publish {args.services * args.endpoints:,} endpoints (one publisher)": f"{populate_s:.2f} s",
        "new consumer syncs one service, p50 / p99": f"{percentile(syncs, 50) * ms:.1f} / {percentile(syncs, 99) * ms:.1f} ms",
        "memory per 10,000 endpoints held": f"{memory / 2**20:.1f} MiB",
        f"publish to {args.watchers} watchers, p50 / p99": f"{percentile(lat, 50) * ms:.1f} / {percentile(lat, 99) * ms:.1f} ms",
        "  (max, mean)": f"{max(lat) * ms:.1f}, {statistics.fmean(lat) * ms:.1f} ms",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--samples", type=int, default=50)
    add_backend_arg(parser)
    parser.add_argument("--only", choices=["etcd", "zookeeper"])
    parser.add_argument(
        "--watcher", nargs=3, metavar=("KIND", "PORT", "SERVICE"), help=argparse.SUPPRESS
    )  # internal: one watching consumer process
    parser.add_argument(
        "--quick", action="store_true", help="20 x 2 endpoints, 2 watchers, 4 changes, 4 samples"
    )
    args = parser.parse_args()
    if args.quick:
        args.services, args.endpoints, args.watchers, args.changes, args.samples = 20, 2, 2, 4, 4
    if args.watcher:
        kind, port, service = args.watcher
        anyio.run(watcher_process, kind, int(port), service, backend=args.backend or "asyncio")
        return
    for backend in backends_of(args):
        table(args, backend)


def table(args: argparse.Namespace, backend: str) -> None:
    """Every registry's figures with this process on `backend`, as one Markdown table."""
    results: dict[str, dict[str, str]] = {}
    kinds = {"etcd 3.4": EtcdServer, "ZooKeeper 3.8": ZooKeeperServer}
    for name, kind in kinds.items():
        if args.only and not name.lower().startswith(args.only[:4]):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            server = (
                kind(Path(tmp))
                if kind is EtcdServer
                else ZooKeeperServer(Path(tmp), force_sync=True)
            )
            server.start()
            try:
                results[name] = anyio.run(measure, server, args, backend=backend)
            finally:
                server.stop()
    names = list(results)
    print(f"| {backend}, loopback | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in next(iter(results.values())):
        print(f"| {row} | " + " | ".join(results[n][row] for n in names) + " |")
    print()


if __name__ == "__main__":
    main()
