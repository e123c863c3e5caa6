"""The newest version of each pushed resource per workspace, and the wakeups of its watches.

Every parked long-poll needs to know when something newer than what its data plane
holds exists. Reading the store per watch would cost one read per watch per second
(with 1,000 data planes, thousands of reads a second); instead one `Heads` per
control-plane process keeps, per workspace, the latest rules version and operator
request counter, re-read from the store at most once per `max_age` (another replica
may have written them) or at once after a change made here. Watches wait on one
event per workspace and are woken when a head moves; `follow_forever` (one task per
process) re-reads the heads of the workspaces being watched, so a change made through
another replica wakes them within `max_age`.
"""

from __future__ import annotations

import time

import anyio
import attrs

from sofamesh.control.records import Records


@attrs.frozen
class Head:
    rules: int  # the latest rules version number (0: none)
    desired: int  # the workspace's operator-request counter
    read_at: float


class Heads:
    def __init__(self, records: Records, max_age: float = 1.0) -> None:
        self.records = records
        self.max_age = max_age
        self._heads: dict[str, Head] = {}
        self._events: dict[str, anyio.Event] = {}
        self.closed = False  # the process is stopping: watches return at once

    async def follow_forever(self) -> None:
        """Re-read the heads of every watched workspace once per `max_age` (other replicas)."""
        while True:
            await anyio.sleep(self.max_age)
            for workspace in list(self._events):
                await self.get(workspace)

    def event(self, workspace: str) -> anyio.Event:
        """The event the next change of `workspace` sets (take it before reading heads)."""
        return self._events.setdefault(workspace, anyio.Event())

    def changed(self, workspace: str) -> None:
        """A change made here: forget the cached head and wake the workspace's watches."""
        self._heads.pop(workspace, None)
        self._wake(workspace)

    def close(self) -> None:
        """Wake every watch for good: a stopping process answers its long-polls now (each
        with what it has, often nothing) rather than holding its drain until they time out."""
        self.closed = True
        for workspace in list(self._events):
            self._wake(workspace)

    def _wake(self, workspace: str) -> None:
        event = self._events.pop(workspace, None)
        if event is not None:
            event.set()

    async def get(self, workspace: str) -> Head:
        head = self._heads.get(workspace)
        now = time.monotonic()
        if head is not None and now - head.read_at < self.max_age:
            return head
        rules = await self.records.get_json(f"rulehead/{workspace}")
        desired = await self.records.get_json(f"desiredhead/{workspace}")
        fresh = Head(rules["version"] if rules else 0, desired["seq"] if desired else 0, now)
        self._heads[workspace] = fresh
        if head is not None and (head.rules, head.desired) != (fresh.rules, fresh.desired):
            self._wake(workspace)  # moved by another replica
        return fresh
