"""Shared pieces for the governance filter tests: rules, a scripted terminal, invocations."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from sofamesh.chain import Filter, Handler, build_chain
from sofamesh.clock import FakeClock
from sofamesh.codecs.http1 import HttpResponse
from sofamesh.endpoint import Endpoint
from sofamesh.governance.filters.state import Options
from sofamesh.governance.holder import Governance
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.protocols.http.mapping import result_to_response


def governance(
    rules: dict[str, Any], clock: FakeClock | None = None, *, seed: int = 1, local_zone: str = ""
) -> Governance:
    """A holder with `rules` in force; randomness pinned by `seed`."""
    g = Governance(
        clock=clock or FakeClock(),
        options=Options(rand=random.Random(seed).random, local_zone=local_zone),
    )
    assert g.load(rules, "test"), g.last_error
    return g


def call(
    service: str = "orders",
    method: str = "/orders",
    *,
    caller: str = "web",
    headers: dict[str, str] | None = None,
    protocol: str = "http",
    idempotent: bool = True,
    deadline: float | None = None,
    payload: Any = None,
) -> Invocation:
    return Invocation(
        protocol=protocol,
        service=service,
        method=method,
        headers=Headers((headers or {}).items()),
        caller=caller,
        deadline=deadline,
        idempotent=idempotent,
        payload=payload,
    )


class Terminal:
    """The end of the chain: records each call and answers from a script (default OK).

    With `gate` set, every call waits for it first -- to hold calls in flight.
    """

    def __init__(self, *results: Result | Status, gate: anyio.Event | None = None) -> None:
        self.script = list(results)
        self.calls: list[Invocation] = []
        self.endpoints: list[Endpoint | None] = []
        self.gate = gate
        self.entered = 0

    async def __call__(self, inv: Invocation) -> Result:
        self.calls.append(inv)
        self.endpoints.append(inv.endpoint)
        self.entered += 1
        if self.gate is not None:
            await self.gate.wait()
        if not self.script:
            return Result(Status.OK, code=200)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return item if isinstance(item, Result) else Result(item, code=_code(item))


def _code(status: Status) -> int:
    return {Status.OK: 200, Status.APP_ERROR: 500}.get(status, 0)


def chain(filters: Sequence[Filter], terminal: Handler) -> Handler:
    return build_chain(list(filters), terminal)


class Sleeps:
    """An injectable sleep: records what it was asked, returns at once (or advances a clock)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.asked: list[float] = []
        self._clock = clock

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if self._clock is not None:
            self._clock.advance(seconds)
        await anyio.lowlevel.checkpoint()


def endpoints(service: str = "orders", n: int = 3, **meta: Callable[[int], Any]) -> list[Endpoint]:
    """`n` endpoints on ports 9000.. with metadata from per-index callables."""
    return [
        Endpoint(service, "10.0.0.1", 9000 + i, **{k: f(i) for k, f in meta.items()})
        for i in range(n)
    ]


class Clusters:
    """Stands in for `ClusterManager` under `BalanceFilter`: fixed endpoints per service."""

    def __init__(self, clock: FakeClock, **services: list[Endpoint]) -> None:
        self._clock = clock
        self._services = services
        self.clusters: dict[str, Any] = {}

    async def canonical_name(self, service: str) -> str:
        return service

    def get(self, service: str) -> Any:
        from sofamesh.config.model import PolicyConfig
        from sofamesh.stats import Stats
        from sofamesh.upstream.cluster import Cluster

        cluster = self.clusters.get(service)
        if cluster is None:
            cluster = Cluster(service, PolicyConfig(), Stats(), self._clock)
            cluster.update(frozenset(self._services.get(service, [])))
            self.clusters[service] = cluster
        return cluster

    for_call = get


def rendered(result: Result) -> HttpResponse:
    """What an HTTP caller receives for `result`: the listener's own rendering."""
    return result_to_response(result, "orders")
