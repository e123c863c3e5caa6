"""Per-call cost of the SDK's outbound chain, with and without governance rules, in one run.

    .venv/bin/python benchmarks/chain.py [--calls 5000] [--rounds 21] [--backend asyncio|trio]

Three chains, built as `Runtime.outbound_chain` builds them, each in front of a
null terminal (an async function returning ``Result(Status.OK)``) and a real
`ClusterManager` over an in-memory registry with three endpoints:

- foundation: StatsFilter, TimeoutFilter, ConnectRetryFilter, BalanceFilter;
- governance, no rules: the same with `compose.outbound_filters` in `extra` and
  `compose.retry_filter` in place of ConnectRetryFilter, and an empty rules document;
- governance, full set: the same chain with a realistic document in force -- a
  route (weighted split over version subsets, timeout, retry policy with a
  budget), a service breaker, a QPS limit, an outbound auth allow list.

Each call builds its `Invocation` (as the SDK does) and awaits the chain. Rounds
alternate the chains so that drift on a shared machine hits each alike; the table
reports, in microseconds per call, the best round per chain (as `timeit` advises:
other work on the machine only ever adds time) and the median round, and the
governance overhead against the foundation chain.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from sofamesh.chain import Filter, Handler, build_chain
from sofamesh.clock import MonotonicClock
from sofamesh.cluster import ClusterManager
from sofamesh.config.model import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.filters import BalanceFilter, ConnectRetryFilter, StatsFilter, TimeoutFilter
from sofamesh.governance.compose import outbound_filters, retry_filter
from sofamesh.governance.source import Governance
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.stats import Stats

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


async def null_terminal(inv: Invocation) -> Result:
    return Result(Status.OK)


def build(clusters: ClusterManager, governance: Governance | None) -> Handler:
    clock, stats = governance.clock if governance else MonotonicClock(), Stats()
    policy = PolicyConfig()

    def policy_for(_service: str) -> PolicyConfig:
        return policy  # as MeshConfig.policy_for: a lookup, no construction

    extra: list[Filter] = outbound_filters(governance, clock) if governance else []
    retry: Filter = (
        retry_filter(governance, policy_for, stats, clock)
        if governance
        else ConnectRetryFilter(policy_for, stats)
    )
    filters: list[Filter] = [
        StatsFilter(stats, "outbound", clock),
        *extra,
        TimeoutFilter(policy_for, clock),
        retry,
        BalanceFilter(clusters, clock),
    ]
    return build_chain(filters, null_terminal)


async def measure(handler: Handler, calls: int) -> float:
    headers = [("x-user", "42"), ("host", SERVICE)]
    start = time.perf_counter()
    for _ in range(calls):
        inv = Invocation(
            protocol="http",
            service=SERVICE,
            method="/orders/1",
            headers=Headers.from_lower(list(headers)),
            caller="bench-app",
            idempotent=True,
        )
        result = await handler(inv)
    elapsed = time.perf_counter() - start
    assert result.ok, result.detail
    return elapsed / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    hub = MemoryHub()
    async with MemoryRegistry(hub) as registry:
        for i in range(3):
            await registry.publish(
                Endpoint(SERVICE, "127.0.0.1", 9000 + i, version=f"v{1 + i % 2}")
            )
        async with ClusterManager(
            registry, lambda s: PolicyConfig(), Stats(), MonotonicClock()
        ) as cm:
            await cm.get(SERVICE).ready.wait()
            empty, full = Governance(), Governance()
            assert full.load(FULL_RULES, "bench"), full.last_error
            chains: dict[str, Callable[[], Awaitable[float]]] = {}
            for name, gov in [
                ("foundation", None),
                ("governance, no rules", empty),
                ("governance, full set", full),
            ]:
                handler = build(cm, gov)
                chains[name] = lambda h=handler: measure(h, calls)  # type: ignore[misc]
            for run in chains.values():
                await run()  # warm up
            samples: dict[str, list[float]] = {name: [] for name in chains}
            for _ in range(rounds):
                for name, run in chains.items():
                    samples[name].append(await run())
    best_base = min(samples["foundation"])
    median_base = statistics.median(samples["foundation"])
    print(f"us per call, {rounds} rounds x {calls} calls")
    print("| chain | best | over foundation | median | over foundation |")
    print("|---|---|---|---|---|")
    for name, values in samples.items():
        best, median = min(values), statistics.median(values)
        print(
            f"| {name} | {best:.2f} | {best - best_base:+.2f} | {median:.2f} "
            f"| {median - median_base:+.2f} |"
        )
    rows = full.snapshot()["rules"]
    assert rows["routes"][0]["matched"] > 0 and rows["breakers"][0]["admitted"] > 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rounds, backend=args.backend)
