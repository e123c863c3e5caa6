"""HTTP/1.1 codec and transport throughput, on one core.

    python benchmarks/http1_codec.py codec              # in-memory: server + client codec per exchange
    python benchmarks/http1_codec.py loopback           # Http1Pool -> Http1Server echo, one process
    python benchmarks/http1_codec.py loopback --profile # ... under cProfile, with h11's share
    python benchmarks/http1_codec.py echo --port 8081   # an echo server, for wrk or as an upstream
    python benchmarks/http1_codec.py proxy --port 8080 --upstream 127.0.0.1:8081
                                                        # server + pool: one proxy hop, for wrk
    python benchmarks/http1_codec.py --quick            # every mode, small and short: a smoke run

`loopback` runs both ends in one process, so a request costs a server
exchange *and* a client exchange: the same codec work as one proxy hop.
asyncio runs on uvloop unless --backend says otherwise; `--backend both` runs each
loop mode on uvloop, then on trio. `codec` has no event loop.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import h11

from sofamesh.codecs.http1 import Http1ClientCodec, Http1ServerCodec, HttpRequest, HttpResponse
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.protocols.http.server import ConnInfo, Http1Server

REQUEST = HttpRequest(
    "POST",
    "/echo",
    [(b"host", b"127.0.0.1"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")],
    b"hello world",
)


async def echo(request: HttpRequest, _conn: ConnInfo) -> HttpResponse:
    return HttpResponse(200, [(b"content-type", b"text/plain")], request.body)


def bench_codec(n: int) -> None:
    server, client = Http1ServerCodec(), Http1ClientCodec()
    response = HttpResponse(200, [(b"content-type", b"text/plain")], b"hello world")
    start = time.process_time()
    for _ in range(n):
        server.receive_data(client.encode_request(REQUEST))
        request = server.next_request()
        assert request is not None
        assert client.receive_data(server.encode_response(response)) is not None
    ours = n / (time.process_time() - start)
    start = time.process_time()
    for _ in range(n):
        _h11_exchange()
    theirs = n / (time.process_time() - start)
    print(f"codec exchanges per CPU-second: sofamesh {ours:,.0f}, h11 both ways {theirs:,.0f}")


_H11_C, _H11_S = h11.Connection(h11.CLIENT), h11.Connection(h11.SERVER)


def _h11_exchange() -> None:
    """The same exchange with h11 doing both directions (the baseline we improve on)."""
    c, s = _H11_C, _H11_S
    s.receive_data(
        c.send(
            h11.Request(
                method="POST",
                target="/echo",
                headers=[*REQUEST.headers[:3], (b"content-length", b"11")],
            )
        )
        + c.send(h11.Data(data=REQUEST.body))
        + c.send(h11.EndOfMessage())
    )
    while type(s.next_event()) is not h11.EndOfMessage:
        pass
    c.receive_data(
        s.send(
            h11.Response(
                status_code=200,
                headers=[(b"content-type", b"text/plain"), (b"content-length", b"11")],
            )
        )
        + s.send(h11.Data(data=REQUEST.body))
        + s.send(h11.EndOfMessage())
    )
    while type(c.next_event()) is not h11.EndOfMessage:
        pass
    c.start_next_cycle()
    s.start_next_cycle()


async def bench_loopback(n: int, concurrency: int) -> None:
    server = Http1Server(echo)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with (
        anyio.create_task_group() as tg,
        Http1Pool(max_connections_per_endpoint=concurrency) as pool,
    ):
        await tg.start(server.serve, listener)

        async def worker(count: int) -> None:
            for _ in range(count):
                await pool.send("127.0.0.1", port, REQUEST)

        await worker(100)  # warm up: connections, caches
        wall, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as workers:
            for _ in range(concurrency):
                workers.start_soon(worker, n // concurrency)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = n // concurrency * concurrency
        print(
            f"loopback: {done / wall:,.0f} req/s, {cpu / done * 1e6:.0f} us CPU per request"
            f" ({done / cpu:,.0f} req/s per busy core), {concurrency} connections"
        )
        await server.drain()


async def serve_echo(port: int, seconds: float) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    server = Http1Server(echo)
    with anyio.move_on_after(seconds):
        await _serve_and_report(server, listener)


async def serve_proxy(port: int, upstream: str, seconds: float) -> None:
    host, _, up_port = upstream.rpartition(":")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    async with Http1Pool(max_connections_per_endpoint=256) as pool:

        async def forward(request: HttpRequest, _conn: ConnInfo) -> HttpResponse:
            return await pool.send(host, int(up_port), request)

        with anyio.move_on_after(seconds):
            await _serve_and_report(Http1Server(forward), listener)


async def _serve_and_report(server: Http1Server, listener: anyio.abc.Listener[Any]) -> None:
    """Serve until cancelled, then print requests per CPU-second (robust on a shared machine)."""
    cpu = time.process_time()
    try:
        await server.serve(listener)
    finally:
        cpu = time.process_time() - cpu
        served = server.statistics().requests_served
        print(
            f"served {served:,} requests in {cpu:.2f} CPU s:"
            f" {served / max(cpu, 1e-9):,.0f} req/s per busy core",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", choices=["codec", "loopback", "echo", "proxy"])
    parser.add_argument("-n", type=int, default=50_000, help="requests")
    parser.add_argument("-c", type=int, default=32, help="concurrent connections (loopback)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--upstream", default="127.0.0.1:8081")
    parser.add_argument("--seconds", type=float, default=1e9, help="how long echo/proxy serve")
    parser.add_argument("--backend", choices=["uvloop", "asyncio", "trio", "both"], default="uvloop",
                        help="both: loopback on uvloop, then on trio")  # fmt: skip
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every mode, 2,000 requests, 0.1 s of serving on port 0",
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.c, args.port, args.seconds = 2_000, 8, 0, 0.1
    elif args.mode is None:
        parser.error("name a mode, or --quick")
    jobs = make_jobs(args)
    modes = list(jobs) if args.quick else [args.mode]
    for mode in modes:
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(jobs[mode])
            report(profiler)
        else:
            jobs[mode]()


def make_jobs(args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    backends = ["uvloop", "trio"] if args.backend == "both" else [args.backend]

    def run(func: Callable[..., Awaitable[None]], *fargs: Any) -> None:
        for name in backends:
            if len(backends) > 1:
                print(f"backend {name}:")
            backend = "trio" if name == "trio" else "asyncio"
            options: dict[str, Any] = {"use_uvloop": True} if name == "uvloop" else {}
            anyio.run(func, *fargs, backend=backend, backend_options=options)

    return {
        "codec": lambda: bench_codec(args.n),
        "loopback": lambda: run(bench_loopback, args.n, args.c),
        "echo": lambda: run(serve_echo, args.port, args.seconds),
        "proxy": lambda: run(serve_proxy, args.port, args.upstream, args.seconds),
    }


def report(profiler: cProfile.Profile) -> None:
    """Top functions, and own time by package: how much is h11's, anyio's, ours."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    shares = dict.fromkeys(("/h11/", "/anyio/", "/asyncio/", "/sofamesh/", "other"), 0.0)
    for key, row in stats.stats.items():  # type: ignore[attr-defined]
        where = next((k for k in shares if k in key[0]), "other")
        shares[where] += row[2]  # own time, callees excluded
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())
    print(f"own time of {total:.2f}s profiled, by package (cProfile inflates pure Python):")
    for where, seconds in shares.items():
        print(f"  {where.strip('/'):10s} {seconds:6.2f}s {100 * seconds / total:4.0f}%")


if __name__ == "__main__":
    main()
