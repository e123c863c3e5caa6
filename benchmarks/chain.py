"""Per-call cost of the SDK's outbound chain, with no rules and with a realistic set, in one run.

    .venv/bin/python benchmarks/chain.py [--calls 5000] [--rounds 21] [--backend asyncio|trio]
        [--clock wall|cpu]
    .venv/bin/python benchmarks/chain.py --quick    # 300 calls x 3 rounds: a smoke run, ~1 s

Both chains are the ones `Runtime.outbound_chain` composes (the SDK's, in sdk
mode: resolve, stats, governance, timeout, retry, balancing over a real
`ClusterManager` and an in-memory registry with three endpoints), in front of a
null transport (a protocol whose `send` returns ``Result(Status.OK)``):

- no rules: the runtime composes no governance filter at all;
- full set: a realistic document in force -- a route (weighted split over
  version subsets, timeout, retry policy), a service breaker, a QPS limit, an
  outbound auth allow list.

Each call builds its `Invocation` (as the SDK does) and awaits the chain. Rounds
alternate the chains so that drift on a shared machine hits each alike; the table
reports, in microseconds per call, the best round per chain (as `timeit` advises:
other work on the machine only ever adds time) and the median round, and what
the rules add over the chain without them. `--clock cpu` times each round by the
process's CPU time (`time.process_time`) instead of the wall clock: on a machine whose
other work takes the cores away, waiting for a core then adds nothing to a round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from sofamesh.chain import Handler
from sofamesh.config import load_config
from sofamesh.endpoint import Endpoint
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.runtime import Runtime

SERVICE = "com.example.Orders"
FULL_RULES: dict[str, Any] = {
    "version": "bench",
    "routes": [
        {
            "name": "orders-canary",
            "service": SERVICE,
            "match": {"method": {"prefix": "/orders"}},
            "split": [
                {"subset": {"version": "v1"}, "weight": 90},
                {"subset": {"version": "v2"}, "weight": 10},
            ],
            "timeout": 5.0,
            "retry": {"attempts": 3, "retry_on": ["connect_failure", "gateway_error"]},
        }
    ],
    "breakers": [{"service": SERVICE, "strategy": "error_ratio", "threshold": 0.5}],
    "rate_limits": [{"service": SERVICE, "count": 1e9, "direction": "outbound"}],
    "auth": {"outbound": {"rules": [{"service": SERVICE, "allow": ["bench-app"]}]}},
}


class NullSupport:
    """A protocol whose client answers OK at once: the chain's cost and nothing else."""

    name = "null"
    enforces_deadline = True  # answers at once: no deadline to hold it to
    gateway_codes: frozenset[int] = frozenset()
    endpoint_protocols = frozenset({"null"})
    health_probe = None

    async def __aenter__(self) -> NullSupport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, host: str, port: int, inv: Invocation) -> Result:
        return Result(Status.OK)


def open_runtime(hub: MemoryHub, rules: dict[str, Any] | None) -> Runtime:
    config = load_config({"app": "bench-app", "rules": rules}, env={})
    rt = Runtime(config, registry=MemoryRegistry(hub))
    rt.protocols["null"] = NullSupport()  # type: ignore[assignment]
    return rt


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


async def measure(handler: Handler, calls: int) -> float:
    headers = [("x-user", "42"), ("host", SERVICE)]
    start = clock()
    for _ in range(calls):
        # Positional, as the codecs' mappings call it: keywords cost a dict per call.
        # protocol, service, method, headers, caller, deadline, peer, payload, idempotent
        inv = Invocation(
            "null", SERVICE, "/orders/1", Headers.from_lower(list(headers)), "bench-app",
            None, "", None, True,
        )  # fmt: skip
        result = await handler(inv)
    elapsed = clock() - start
    assert result.ok, result.detail
    return elapsed / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    hub = MemoryHub()
    async with MemoryRegistry(hub) as registry:
        for i in range(3):
            ep = Endpoint(SERVICE, "127.0.0.1", 9000 + i, version=f"v{1 + i % 2}")
            await registry.publish(ep)
        async with open_runtime(hub, None) as bare, open_runtime(hub, FULL_RULES) as full:
            chains: dict[str, Callable[[], Awaitable[float]]] = {}
            for name, rt in [("no rules", bare), ("full set", full)]:
                handler = rt.outbound_chain()
                assert rt.clusters is not None
                await rt.clusters.get(SERVICE).ready.wait()
                chains[name] = lambda h=handler: measure(h, calls)  # type: ignore[misc]
            for run in chains.values():
                await run()  # warm up
            samples: dict[str, list[float]] = {name: [] for name in chains}
            for _ in range(rounds):
                for name, run in chains.items():
                    samples[name].append(await run())
            rows = full.governance.snapshot()["rules"]
            assert rows["routes"][0]["matched"] > 0 and rows["breakers"][0]["admitted"] > 0
    best_base = min(samples["no rules"])
    median_base = statistics.median(samples["no rules"])
    print(f"us per call ({clock.__name__}), {rounds} rounds x {calls} calls")
    print("| chain | best | rules add | median | rules add |")
    print("|---|---|---|---|---|")
    for name, values in samples.items():
        best, median = min(values), statistics.median(values)
        print(
            f"| {name} | {best:.2f} | {best - best_base:+.2f} | {median:.2f} "
            f"| {median - median_base:+.2f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--quick", action="store_true", help="300 calls x 3 rounds (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 300, 3
    clock = CLOCKS[args.clock]
    anyio.run(main, args.calls, args.rounds, backend=args.backend)
