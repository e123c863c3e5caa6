"""One timer task for many deadlines: cheaper than a timed cancel scope per call.

anyio's `move_on_after` costs about 6 us on asyncio and 15 us on trio, most of
it arming and disarming a timer for a deadline that is almost never reached.
`DeadlineWatch` keeps every armed deadline in a heap and runs one task that
sleeps until the earliest and cancels the scopes whose time has come, so a
call pays for a plain cancel scope and a heap push. Removal is lazy (an entry
is marked done and skipped); the heap is compacted when dead entries dominate.
With nothing armed the task sleeps until the next `add`: an idle process's watch
does not wake.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from types import TracebackType
from typing import Protocol

import anyio
import anyio.abc

# An entry: [deadline, sequence, scope or None once done]
Entry = list[object]


class Cancellable(Protocol):
    """What the watch cancels: a cancel scope, or a waiter a client wakes without one."""

    def cancel(self) -> None: ...


class DeadlineWatch:
    """Cancels registered scopes at their deadlines (on anyio's clock); run it in a task group."""

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._live = 0
        self._wake: anyio.Event | None = None
        self._next = math.inf  # when the task will look again
        self._offset = 0.0  # anyio's clock minus the monotonic clock, measured by `run`
        # The backend's scope class once `run` started: anyio.CancelScope looks it up per call.
        self.scope_class: type[anyio.CancelScope] = anyio.CancelScope

    def add(self, deadline: float, scope: Cancellable) -> Entry:
        entry: Entry = [deadline, next(self._seq), scope]
        heapq.heappush(self._heap, entry)
        self._live += 1
        if deadline < self._next and self._wake is not None:
            self._wake.set()  # earlier than the task planned to wake: tell it
        return entry

    def time_in(self, seconds: float) -> float:
        """anyio's clock `seconds` from now, without reading it: reading it costs a system
        call on Python 3.11 (the running loop's pid check). anyio's clock is the monotonic
        clock on asyncio and that clock plus a fixed offset on trio, which `run` measures
        each time it wakes (at least once a second while anything is armed)."""
        return time.monotonic() + self._offset + seconds

    def cancel_after(self, seconds: float) -> WatchedScope:
        """A cancel scope this watch cancels `seconds` from now (`anyio.move_on_after`, cheaper)."""
        return WatchedScope(self, seconds)

    def remove(self, entry: Entry) -> None:
        if entry[2] is not None:
            entry[2] = None
            self._live -= 1
            if len(self._heap) > 64 and self._live * 2 < len(self._heap):
                self._heap = [e for e in self._heap if e[2] is not None]
                heapq.heapify(self._heap)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._offset = anyio.current_time() - time.monotonic()
        self.scope_class = type(anyio.CancelScope())
        task_status.started()
        while True:
            now = anyio.current_time()
            self._offset = now - time.monotonic()
            self._fire(now)
            heap = self._heap
            self._next = heap[0][0] if heap else math.inf  # type: ignore[assignment]
            self._wake = anyio.Event()
            if not heap:  # nothing armed (`_fire` drops the removed entries too): asleep
                await self._wake.wait()  # until `add`, not once a second
                continue
            delay = min(self._next - anyio.current_time(), 1.0)
            with anyio.move_on_after(max(delay, 0.0)):
                await self._wake.wait()

    def _fire(self, now: float) -> None:
        heap = self._heap
        while heap and (heap[0][2] is None or heap[0][0] <= now):  # type: ignore[operator]
            entry = heapq.heappop(heap)
            scope = entry[2]
            if scope is not None:
                # Done now: the owner's `remove` after its wake-up must not count it again
                # (a `_live` gone negative made every later `remove` rebuild the heap).
                entry[2] = None
                self._live -= 1
                scope.cancel()  # type: ignore[attr-defined]


class WatchedScope:
    """`with watch.cancel_after(s) as scope:`: a plain cancel scope armed on a `DeadlineWatch`."""

    __slots__ = ("_entry", "_scope", "_seconds", "_watch")

    def __init__(self, watch: DeadlineWatch, seconds: float) -> None:
        self._watch, self._seconds = watch, seconds
        self._scope = watch.scope_class()
        self._entry: Entry | None = None

    def __enter__(self) -> anyio.CancelScope:
        self._entry = self._watch.add(self._watch.time_in(self._seconds), self._scope)
        return self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._entry is not None
        self._watch.remove(self._entry)
        return self._scope.__exit__(exc_type, exc, tb)
