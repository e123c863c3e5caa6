"""The file registry follows every watched service with one poller, not one per watch, and
its polls go to a worker thread only for the services that changed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import Snapshot
from sofamesh.registry.file import RACY, FileRegistry, Seen

pytestmark = pytest.mark.anyio
POLL = 0.02


class CountingFileRegistry(FileRegistry):
    """Records the services each trip to a thread scans, and counts the polls."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, poll_interval=POLL)
        self.trips: list[list[str]] = []
        self.polls = 0
        self.polled = anyio.Event()

    def _scan_all(self, services: list[str]) -> dict[str, tuple[Snapshot, Seen]]:
        self.trips.append(list(services))
        return super()._scan_all(services)

    def _stale(self, services: Iterable[str]) -> list[str]:
        self.polls += 1
        self.polled.set()
        return super()._stale(services)

    async def wait_polls(self, n: int) -> None:
        target = self.polls + n
        while self.polls < target:
            self.polled = anyio.Event()
            await self.polled.wait()


async def test_two_hundred_watches_share_one_poller(tmp_path: Path) -> None:
    async with CountingFileRegistry(tmp_path) as reg, AsyncExitStack() as stack:
        watches = [await stack.enter_async_context(reg.watch(f"svc.{i % 100}")) for i in range(200)]
        for snapshots in watches:
            assert await anext(snapshots) == frozenset()
        # Each service scanned when its first watch began (and perhaps by a poll while that
        # scan was under way), not once per watch.
        scanned = [s for trip in reg.trips for s in trip]
        assert set(scanned) == {f"svc.{i}" for i in range(100)} and len(scanned) < 200
        reg.trips.clear()
        ep = Endpoint("svc.7", "127.0.0.1", 8080)
        await reg.publish(ep)
        with anyio.fail_after(5):
            assert await anext(watches[7]) == {ep}
            assert await anext(watches[107]) == {ep}  # the second watch of the same service
        ep8 = Endpoint("svc.8", "127.0.0.1", 8080)
        await reg.publish(ep8)
        with anyio.fail_after(5):
            assert await anext(watches[8]) == {ep8}
        # Only the services whose directory changed were scanned, each once per trip.
        scanned = [s for trip in reg.trips for s in trip]
        assert set(scanned) == {"svc.7", "svc.8"}
        assert all(len(trip) == len(set(trip)) for trip in reg.trips)
    assert not reg._watched  # every watch that ended let go of its service


async def test_polls_with_nothing_changed_make_no_trip_to_a_thread(tmp_path: Path) -> None:
    """A published entry whose directory was last changed long ago (not racy), an owner
    that runs and a lease far off: the polls `stat` and look, and scan nothing."""
    async with FileRegistry(tmp_path, lease=600) as pub:
        await pub.publish(Endpoint("svc", "127.0.0.1", 8080))
        folder = pub._dir("svc")
        hour_ago = time.time_ns() - 3600 * 10**9
        os.utime(folder, ns=(hour_ago, hour_ago))
        async with CountingFileRegistry(tmp_path) as reg, reg.watch("svc") as snaps:
            assert len(await anext(snaps)) == 1
            reg.trips.clear()
            with anyio.fail_after(5):
                await reg.wait_polls(10)
            assert reg.trips == []
            (folder / "by_hand.tmp").write_text("")  # any change to the directory
            with anyio.fail_after(5):
                while not reg.trips:
                    await reg.wait_polls(1)
            assert reg.trips[0] == ["svc"]


async def test_with_nothing_watched_the_poller_waits_for_a_watch(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path, poll_interval=POLL) as reg:
        await anyio.wait_all_tasks_blocked()
        assert reg._followed is not None and not reg._followed.is_set()
        async with reg.watch("svc") as snaps:
            assert await anext(snaps) == frozenset()
            assert reg._followed.is_set()


def test_what_makes_a_scan_stale(tmp_path: Path) -> None:
    reg = FileRegistry(tmp_path)
    folder = reg._dir("svc")
    folder.mkdir(parents=True)
    _snap, seen = reg._scan_seen("svc")
    assert seen.racy  # just made: a second change in the same tick would not show
    hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(folder, ns=(hour_ago, hour_ago))
    _snap, seen = reg._scan_seen("svc")
    now = time.time()
    assert not seen.racy and seen.until == float("inf") and seen.owners == frozenset()
    assert not seen.stale(hour_ago, now)
    assert seen.stale(hour_ago + 1, now)  # the directory changed
    assert seen._replace(until=now).stale(hour_ago, now)  # a lease or mark ran out
    assert not seen._replace(owners=frozenset({os.getpid()})).stale(hour_ago, now)
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process has it
    assert seen._replace(owners=frozenset({dead})).stale(hour_ago, now)
    assert RACY > 0
