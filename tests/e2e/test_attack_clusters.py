"""The cluster explosion: every new service name a caller makes up must not cost a
cluster and a registry watch forever.

A `ClusterManager` on a memory registry, with its idle sweep driven by the test: made-up
names beyond `max_clusters` are answered `no_endpoint` at once without a cluster, idle
clusters make room and expire with their watches, and clusters in use stay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from sofamesh.clock import FakeClock
from sofamesh.config.model import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation, Result, Status
from sofamesh.registry.base import Snapshot
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.stats import MAX_SERVICES, OTHER_SERVICES, Stats
from sofamesh.upstream.balance import BalanceFilter
from sofamesh.upstream.cluster import ClusterManager

pytestmark = pytest.mark.anyio


class Sweeps:
    """The manager's idle sleep: returns when the test says a period has passed."""

    def __init__(self) -> None:
        self._due = anyio.Event()

    async def sleep(self, _delay: float) -> None:
        await self._due.wait()
        self._due = anyio.Event()

    async def run(self) -> None:
        self._due.set()
        await anyio.wait_all_tasks_blocked()


@asynccontextmanager
async def manager(max_clusters: int) -> AsyncIterator[tuple[ClusterManager, Sweeps]]:
    sweeps = Sweeps()
    policy = PolicyConfig()
    cm = ClusterManager(
        MemoryRegistry(MemoryHub()),
        lambda _s: policy,
        Stats(),
        FakeClock(),
        max_clusters=max_clusters,
        idle_sleep=sweeps.sleep,
    )
    async with cm:
        yield cm, sweeps


async def unreachable(_inv: Invocation) -> Result:
    raise AssertionError("no endpoint may be picked")


async def test_names_past_the_cap_get_no_endpoint_at_once_without_a_cluster() -> None:
    async with manager(max_clusters=3) as (cm, _):
        watched = [cm.get(f"made.up.{i}") for i in range(3)]
        balance = BalanceFilter(cm, FakeClock())
        with anyio.fail_after(1):  # no wait for a first snapshot that will never come
            result = await balance.invoke(Invocation("http", "made.up.3", "GET"), unreachable)
        assert result.status is Status.NO_ENDPOINT
        assert sorted(cm.clusters) == ["made.up.0", "made.up.1", "made.up.2"]
        assert cm.overflowed == 1
        await anyio.wait_all_tasks_blocked()
        assert all(c.watch is not None and not c.watch.cancel_called for c in watched)


async def test_an_idle_cluster_makes_room_and_its_watch_ends() -> None:
    async with manager(max_clusters=2) as (cm, sweeps):
        old, kept = cm.get("old"), cm.get("kept")
        await sweeps.run()  # both marked unused
        cm.get("kept")
        cm.get("new")
        assert sorted(cm.clusters) == ["kept", "new"]
        assert old.watch is not None and old.watch.cancel_called
        assert kept.watch is not None and not kept.watch.cancel_called


async def test_clusters_unused_for_a_whole_period_expire() -> None:
    async with manager(max_clusters=10) as (cm, sweeps):
        for name in ("idle", "busy", "in_flight"):
            cm.get(name)
        cm.clusters["in_flight"].active["10.0.0.1:80"] = 1
        await sweeps.run()
        cm.get("busy")
        await sweeps.run()
        assert sorted(cm.clusters) == ["busy", "in_flight"]
        await anyio.wait_all_tasks_blocked()


async def test_thousands_of_made_up_names_stay_within_the_cap() -> None:
    async with manager(max_clusters=100) as (cm, sweeps):
        for i in range(3000):
            cm.get(f"made.up.{i}")
            if i % 500 == 0:
                await sweeps.run()
        await anyio.wait_all_tasks_blocked()
        assert len(cm.clusters) <= 100


def test_made_up_service_names_share_one_stats_row_past_the_cap() -> None:
    stats = Stats()
    for i in range(MAX_SERVICES + 500):
        stats.service("outbound", f"made.up.{i}").record(Status.NO_ENDPOINT, 1.0)
    stats.service("inbound", "real").record(Status.OK, 1.0)  # directions are counted apart
    outbound = {svc for d, svc, _ in stats.services if d == "outbound"}
    assert len(outbound) == MAX_SERVICES + 1
    assert stats.services[("outbound", OTHER_SERVICES, "")].total == 500
    assert ("inbound", "real", "") in stats.services


class CountingRegistry(MemoryRegistry):
    """A memory registry that counts the watches open on it."""

    def __init__(self, hub: MemoryHub) -> None:
        super().__init__(hub)
        self.open_watches = 0

    @asynccontextmanager
    async def watch(self, service: str) -> AsyncIterator[AsyncIterator[Snapshot]]:  # type: ignore[override]
        self.open_watches += 1
        try:
            async with super().watch(service) as snapshots:
                yield snapshots
        finally:
            self.open_watches -= 1


async def test_names_the_registry_does_not_list_leave_no_cluster_nor_watch() -> None:
    hub = MemoryHub()
    registry = CountingRegistry(hub)
    await registry.publish(Endpoint("real", "127.0.0.1", 80))
    policy = PolicyConfig()
    async with ClusterManager(registry, lambda _s: policy, Stats(), FakeClock()) as cm:
        balance = BalanceFilter(cm, FakeClock())
        with anyio.fail_after(5):
            for i in range(500):
                inv = Invocation("http", f"made.up.{i}", "GET")
                assert (await balance.invoke(inv, unreachable)).status is Status.NO_ENDPOINT
            called: list[Invocation] = []

            async def served(inv: Invocation) -> Result:
                called.append(inv)
                return Result(Status.OK)

            await balance.invoke(Invocation("http", "real", "GET"), served)
        await anyio.wait_all_tasks_blocked()
        assert list(cm.clusters) == ["real"] and len(called) == 1
        assert registry.open_watches == 1 and cm.unknown == 500
