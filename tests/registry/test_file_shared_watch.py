"""The file registry follows every watched service with one poller, not one per watch."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest

from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import Snapshot
from sofamesh.registry.file import FileRegistry

pytestmark = pytest.mark.anyio
POLL = 0.02


class CountingFileRegistry(FileRegistry):
    """Counts the poller's trips to a thread and the services each one scans."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, poll_interval=POLL)
        self.trips: list[int] = []

    def _scan_all(self, services: list[str]) -> dict[str, Snapshot]:
        self.trips.append(len(services))
        return super()._scan_all(services)


async def test_two_hundred_watches_share_one_poller(tmp_path: Path) -> None:
    async with CountingFileRegistry(tmp_path) as reg, AsyncExitStack() as stack:
        watches = [await stack.enter_async_context(reg.watch(f"svc.{i % 100}")) for i in range(200)]
        for snapshots in watches:
            assert await anext(snapshots) == frozenset()
        reg.trips.clear()
        ep = Endpoint("svc.7", "127.0.0.1", 8080)
        await reg.publish(ep)
        with anyio.fail_after(5):
            assert await anext(watches[7]) == {ep}
            assert await anext(watches[107]) == {ep}  # the second watch of the same service
        # A trip already under way when the counts were cleared may be the one that saw
        # `ep`; an update published now is seen by a trip that began after the clear.
        ep8 = Endpoint("svc.8", "127.0.0.1", 8080)
        await reg.publish(ep8)
        with anyio.fail_after(5):
            assert await anext(watches[8]) == {ep8}
        # One trip per interval, each scanning the 100 services once, however many watch.
        assert reg.trips[-1] == 100 and max(reg.trips) == 100
    assert not reg._watched  # every watch that ended let go of its service
