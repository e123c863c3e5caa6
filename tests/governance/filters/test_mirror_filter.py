"""MirrorFilter: copies a share of a route's calls to a subset; the caller never sees them."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest
from govhelp import Clusters, Terminal, call, chain, endpoints, governance

from sofamesh.clock import FakeClock
from sofamesh.governance.filters.mirror import SHADOW_HEADER, MirrorFilter
from sofamesh.governance.filters.route import RouteFilter
from sofamesh.model import Invocation, Result, Status
from sofamesh.upstream.balance import BalanceFilter

pytestmark = pytest.mark.anyio

V1, V2 = endpoints(n=2, version=lambda i: f"v{i + 1}")


def rules(percentage: float) -> dict[str, Any]:
    return {
        "routes": [
            {
                "name": "shadow-v2",
                "service": "orders",
                "split": [{"subset": {"version": "v1"}}],
                "mirror": {"subset": {"version": "v2"}, "percentage": percentage},
            }
        ]
    }


class Provider:
    """v1 answers; v2 (the mirror) fails or hangs, as a broken new version might."""

    def __init__(self, mirror_gate: anyio.Event | None = None) -> None:
        self.seen: list[Invocation] = []
        self.mirror_gate = mirror_gate
        self.mirrored = anyio.Event()

    async def __call__(self, inv: Invocation) -> Result:
        self.seen.append(inv)
        if inv.endpoint == V2:
            self.mirrored.set()
            if self.mirror_gate is not None:
                await self.mirror_gate.wait()
            raise RuntimeError("the mirror blew up")
        return Result(Status.OK, code=200)


async def test_mirror_copies_to_the_subset_and_the_caller_gets_the_primary() -> None:
    clock = FakeClock()
    g = governance(rules(100), clock)
    provider = Provider()
    async with anyio.create_task_group() as tg:
        balance = BalanceFilter(Clusters(clock, orders=[V1, V2]), clock)  # type: ignore[arg-type]
        handler = chain([RouteFilter(g, clock), MirrorFilter(tg), balance], provider)
        result = await handler(call(headers={"x-user": "1"}))
        await provider.mirrored.wait()
    assert result.ok and result.endpoint == V1
    copy = next(inv for inv in provider.seen if inv.endpoint == V2)
    assert copy.headers.get(SHADOW_HEADER) == "true" and copy.headers.get("x-user") == "1"
    assert g.snapshot()["rules"]["routes"][0]["mirrored"] == 1


async def test_only_a_share_is_mirrored() -> None:
    clock = FakeClock()
    g = governance(rules(25), clock)
    term = Terminal()
    async with anyio.create_task_group() as tg:
        mirror = MirrorFilter(tg, rand=random.Random(5).random)
        balance = BalanceFilter(Clusters(clock, orders=[V1, V2]), clock)  # type: ignore[arg-type]
        handler = chain([RouteFilter(g, clock), mirror, balance], term)
        for _ in range(400):
            await handler(call())
    row = g.snapshot()["rules"]["routes"][0]
    assert 70 < row["mirrored"] + row["mirror_dropped"] < 130  # (the loop never yields: some drop)
    assert sum(1 for e in term.endpoints if e == V2) == row["mirrored"]


async def test_slow_mirrors_beyond_the_cap_are_dropped() -> None:
    clock = FakeClock()
    g = governance(rules(100), clock)
    gate = anyio.Event()
    provider = Provider(mirror_gate=gate)
    async with anyio.create_task_group() as tg:
        mirror = MirrorFilter(tg, max_in_flight=2)
        balance = BalanceFilter(Clusters(clock, orders=[V1, V2]), clock)  # type: ignore[arg-type]
        handler = chain([RouteFilter(g, clock), mirror, balance], provider)
        for _ in range(5):
            assert (await handler(call())).ok  # the caller never waits for its mirror
        assert mirror.in_flight == 2
        gate.set()
    row = g.snapshot()["rules"]["routes"][0]
    assert row["mirrored"] == 2 and row["mirror_dropped"] == 3
