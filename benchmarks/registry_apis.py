"""Registration and lookup through the sidecar's Eureka, Consul and Nacos APIs vs the registry.

    .venv/bin/python benchmarks/registry_apis.py [--samples 300] [--seconds 3]
                                                 [--backend asyncio|trio|both]
    .venv/bin/python benchmarks/registry_apis.py --quick   # 30 samples, 0.5 s: a smoke run

One sidecar runs in this process on a file registry (the registry of one host)
and serves the three APIs on loopback. A client on one keep-alive connection
(httpx) then, for each API:

1. registers `samples` instances of as many services: p50 / p99 per registration
   (the HTTP request until its answer, the registry written);
2. looks one service up `samples` times (Eureka `GET /eureka/apps/{APP}` as JSON,
   Consul `GET /v1/health/service/{name}?passing`, Nacos `GET .../instance/list`);
3. looks it up back to back for `seconds`: lookups/s one client gets.

The native row is the registry itself: `publish` of an endpoint, and a new watch
reading a service's first snapshot. Prints a Markdown table per backend (both by default:
the sidecar and the client in this process on asyncio, then on trio).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import sniffio
from netutil import add_backend_arg, backends_of

from sofamesh.config import load_config
from sofamesh.endpoint import Endpoint
from sofamesh.sidecar.app import Sidecar

Call = Callable[[int], Awaitable[Any]]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def timed(call: Call, samples: int) -> tuple[float, float]:
    took = []
    for i in range(samples):
        start = time.perf_counter()
        await call(i)
        took.append((time.perf_counter() - start) * 1000)
    return statistics.median(took), percentile(took, 99)


async def rate(call: Call, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        await call(done)
        done += 1
    return done / (time.perf_counter() - start)


def api_calls(http: httpx.AsyncClient, sc: Sidecar, name: str) -> tuple[Call, Call]:
    base = f"http://{sc.bound[f'registry_apis.{name}']}"
    port = 9000

    async def eureka_register(i: int) -> None:
        body = {"instance": {"instanceId": f"e-{i}", "app": f"EUREKA{i}", "ipAddr": "127.0.0.1",
                             "port": {"$": port, "@enabled": "true"}, "status": "UP"}}  # fmt: skip
        r = await http.post(f"{base}/eureka/apps/EUREKA{i}", json=body)
        r.raise_for_status()

    async def eureka_lookup(_i: int) -> None:
        r = await http.get(f"{base}/eureka/apps/EUREKA0", headers={"accept": "application/json"})
        r.raise_for_status()

    async def consul_register(i: int) -> None:
        body = {"Name": f"consul{i}", "ID": f"c-{i}", "Address": "127.0.0.1", "Port": port}
        r = await http.put(f"{base}/v1/agent/service/register", json=body)
        r.raise_for_status()

    async def consul_lookup(_i: int) -> None:
        r = await http.get(f"{base}/v1/health/service/consul0?passing")
        r.raise_for_status()

    async def nacos_register(i: int) -> None:
        # Persistent (no beats), so instances stay healthy through the run.
        q = {"serviceName": f"nacos{i}", "ip": "127.0.0.1", "port": port, "ephemeral": "false"}
        r = await http.post(f"{base}/nacos/v1/ns/instance", params=q)
        r.raise_for_status()

    async def nacos_lookup(_i: int) -> None:
        r = await http.get(f"{base}/nacos/v1/ns/instance/list", params={"serviceName": "nacos0"})
        r.raise_for_status()

    calls = {
        "eureka": (eureka_register, eureka_lookup),
        "consul": (consul_register, consul_lookup),
        "nacos": (nacos_register, nacos_lookup),
    }
    return calls[name]


def native_calls(sc: Sidecar) -> tuple[Call, Call]:
    registry = sc.runtime.registry

    async def publish(i: int) -> None:
        await registry.publish(Endpoint(f"native{i}", "127.0.0.1", 9000 + i))

    async def lookup(_i: int) -> None:
        async with registry.watch("native0") as snaps:
            async for _ in snaps:
                break

    return publish, lookup


def config(registry: str, samples: int) -> dict[str, Any]:
    api = {"listen": "127.0.0.1:0"}
    return {
        "app": "bench",
        "mode": "sidecar",
        "registry": registry,
        "inbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "local_api": {"services": ["*"]},
        "registry_apis": {
            "eureka": api, "consul": api, "nacos": api,
            "max_instances": 4 * samples, "max_services": 4 * samples,
        },
    }  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sc = Sidecar(load_config(config(f"file://{tmp}/registry", args.samples), env={}))
        async with anyio.create_task_group() as tg, httpx.AsyncClient() as http:
            await tg.start(sc.run)
            for name in ("native registry (file)", "eureka", "consul", "nacos"):
                register, lookup = (
                    native_calls(sc) if name.startswith("native") else api_calls(http, sc, name)
                )
                reg = await timed(register, args.samples)
                look = await timed(lookup, args.samples)
                per_s = await rate(lookup, args.seconds)
                rows.append((name, reg, look, per_s))
            sc.stop()
    backend = sniffio.current_async_library()
    print(
        f"| {backend}: through | register p50 / p99 (ms) | lookup p50 / p99 (ms) | lookups/s, one client |"
    )
    print("|---|---|---|---|")
    for name, reg, look, per_s in rows:
        print(
            f"| {name} | {reg[0]:.2f} / {reg[1]:.2f} | {look[0]:.2f} / {look[1]:.2f} | {per_s:,.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0)
    add_backend_arg(parser)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the registry's notes under load are not figures
    if args.quick:
        args.samples, args.seconds = 30, 0.5
    for backend in backends_of(args):
        anyio.run(main, args, backend=backend)  # asyncio without uvloop, as the tests run
        print()
