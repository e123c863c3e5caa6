"""A cluster manager holds a snapshot that empties a cluster, and its timer ends the hold.

The registry is a stream of snapshots the test sends; time is a fake clock and the
manager's timer a fake sleep the test wakes, so no test waits for real time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from sofamesh.clock import FakeClock
from sofamesh.config import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import Snapshot
from sofamesh.stats import Stats
from sofamesh.upstream.cluster import Cluster, ClusterManager
from sofamesh.upstream.removals import RemovalConfig

pytestmark = pytest.mark.anyio

LEASE = 3.0
A, B = Endpoint("svc", "127.0.0.1", 1), Endpoint("svc", "127.0.0.1", 2)


class ScriptedRegistry:
    """Yields to the watcher of `svc` whatever snapshot the test sends."""

    def __init__(self) -> None:
        self.send: MemoryObjectSendStream[Snapshot]
        self.receive: MemoryObjectReceiveStream[Snapshot]
        self.send, self.receive = anyio.create_memory_object_stream[Snapshot](10)

    @asynccontextmanager
    async def watch(self, service: str) -> AsyncIterator[AsyncIterator[Snapshot]]:
        yield self.receive

    async def list_services(self) -> list[str]:
        return ["svc"]


class FakeTimer:
    """The manager's sleep: remembers the delay asked and returns when the test fires it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []
        self._fire = anyio.Event()

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await self._fire.wait()
        self._fire = anyio.Event()

    async def fire(self) -> None:
        self.clock.advance(self.delays[-1])
        self._fire.set()
        await anyio.wait_all_tasks_blocked()


@asynccontextmanager
async def manager(
    share: float = 1.0,
) -> AsyncIterator[tuple[ScriptedRegistry, FakeClock, FakeTimer, Cluster, Stats]]:
    reg, clock, stats = ScriptedRegistry(), FakeClock(), Stats()
    timer = FakeTimer(clock)
    policy = PolicyConfig(registry=RemovalConfig(hold_removal_share=share))
    cm = ClusterManager(reg, lambda _s: policy, stats, clock, sleep=timer.sleep)
    async with reg.send, reg.receive, cm:
        yield reg, clock, timer, cm.get("svc"), stats


async def offer(reg: ScriptedRegistry, *eps: Endpoint, withdrawn: tuple[str, ...] = ()) -> None:
    await reg.send.send(Snapshot(eps, withdrawn=withdrawn, lease=LEASE))
    await anyio.wait_all_tasks_blocked()


async def test_an_emptying_snapshot_is_held_for_one_lease_then_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sofamesh.upstream.cluster")
    async with manager() as (reg, _clock, timer, cluster, stats):
        await offer(reg, A, B)
        await offer(reg)
        assert set(cluster.endpoints) == {A, B}
        assert cluster.pick(set(), 0.0) in (A, B)
        assert timer.delays == [LEASE]
        assert stats.counters["registry.removals_held"] == 1
        assert "without their owners unpublishing them" in caplog.text
        rows = cluster.describe()["endpoints"]
        assert [(r["registry"], r["held_for_s"]) for r in rows] == [("held", LEASE)] * 2
        await timer.fire()
        assert cluster.endpoints == ()
        assert "held removal took effect after 3.0s" in caplog.text


async def test_a_republication_within_the_lease_cancels_the_hold() -> None:
    async with manager() as (reg, _clock, timer, cluster, _stats):
        await offer(reg, A)
        await offer(reg)
        await offer(reg, A)
        assert cluster.describe()["endpoints"][0]["registry"] == "listed"
        await timer.fire()
        assert cluster.endpoints == (A,)
        await offer(reg)  # a second glitch is held again
        assert cluster.endpoints == (A,) and len(timer.delays) == 2


async def test_an_owners_unpublish_empties_the_cluster_at_once() -> None:
    async with manager() as (reg, _clock, timer, cluster, _stats):
        await offer(reg, A, B)
        await offer(reg, withdrawn=(A.key, B.key))
        assert cluster.endpoints == () and timer.delays == []
        assert cluster.pick(set(), 0.0) is None


async def test_the_share_comes_from_the_services_policy() -> None:
    async with manager(share=0.5) as (reg, _clock, timer, cluster, _stats):
        await offer(reg, A, B)
        await offer(reg, B)
        assert set(cluster.endpoints) == {A, B} and timer.delays == [LEASE]
        await timer.fire()
        assert cluster.endpoints == (B,)


async def test_bare_sets_are_snapshots_without_marks() -> None:
    async with manager() as (_reg, _clock, _timer, cluster, _stats):
        cluster.update(frozenset([A]))
        cluster.update(frozenset())
        assert cluster.endpoints == (A,)
        assert cluster.removals.next_release is not None
