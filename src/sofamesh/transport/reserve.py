"""Worker tasks a server keeps between its connections, so a new connection starts none.

A multiplexed connection runs each request on a worker task of its own (`workers.py`),
reused from request to request; but its workers ended with it, and the next connection
started its own again: an anyio task costs about 112,000 instructions to start (a bare
asyncio task about 14,000), so a fresh Bolt connection paid some 3.6 million for the
workers of its first burst. A `WorkerReserve` belongs to one `serve` of a server and
starts its workers in that serve's task group; a connection borrows them as a `Crew`,
and when it closes they come back here, idle, for the next connection to take.

A worker serves its crews inside a cancel scope of its own, kept from crew to crew
(entering one costs about a quarter of a task's start) and replaced only after a close
cancelled it: closing a crew wakes its idle workers, cancels the busy ones (the peer is
gone), and `Crew.wait_returned` waits until all have left it.
At most `max_idle` workers wait here; one more coming back ends instead. A sweep every
`idle_timeout` ends those that waited a whole `idle_timeout` unused, oldest first, so
a burst's workers do not outlive it. `close()` ends every idle worker; a worker still
serving a crew ends as it comes back. Nothing runs outside the task group given.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc

from sofamesh.transport.workers import Waker, wake, waker_class

T = TypeVar("T")

MAX_IDLE = 1024  # idle workers a reserve keeps


class _Worker:
    __slots__ = ("crew", "item", "scope", "since", "wake")

    def __init__(self, crew: Crew[Any] | None, item: Any) -> None:
        self.crew = crew  # whom it serves; None while it waits in the reserve
        self.item = item  # handed over with its wake-up
        self.scope: anyio.CancelScope | None = None  # its scope while it serves a crew
        self.since = 0.0  # when it came back to the reserve
        self.wake: Waker | None = None


class Crew(Generic[T]):
    """One connection's workers, borrowed from a reserve: runs `handle(item)` for every
    submitted item at once, on an idle worker of its own, else on one the reserve lends."""

    def __init__(self, reserve: WorkerReserve, handle: Callable[[T], Awaitable[None]]) -> None:
        self._reserve = reserve
        self.handle = handle
        self.idle: list[_Worker] = []
        self.members: set[_Worker] = set()
        self.closed = False
        self._returned: anyio.Event | None = None

    def submit(self, item: T) -> None:
        if self.idle:
            worker = self.idle.pop()
            worker.item = item
            waker = worker.wake
            if waker is not None and not waker.done():
                waker.set_result(None)
        else:
            self._reserve.lend(self, item)

    def close(self) -> None:
        """Idle workers go back to the reserve; busy ones are cancelled, then go back."""
        self.closed = True
        idle, self.idle = self.idle, []
        for worker in idle:
            if worker.wake is not None:
                wake(worker.wake)
        woken = set(idle)
        for worker in self.members:
            if worker not in woken and worker.scope is not None:
                worker.scope.cancel()

    async def wait_returned(self) -> None:
        """Return once every worker of this crew has gone back (after `close`)."""
        if self.members:
            self._returned = anyio.Event()
            await self._returned.wait()

    def left(self, worker: _Worker) -> None:
        self.members.discard(worker)
        if not self.members and self._returned is not None:
            self._returned.set()


class WorkerReserve:
    """Worker tasks in `tg`, lent to connections' `Crew`s and taken back as they close.
    A worker serves crews of any item type, one after the other."""

    def __init__(
        self,
        tg: anyio.abc.TaskGroup,
        name: str = "worker",
        *,
        max_idle: int = MAX_IDLE,
        idle_timeout: float = 90.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tg = tg
        self._name = name
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._idle: list[_Worker] = []  # the longest idle first
        self._waker = waker_class()
        self.closed = False
        self.started = 0

    def crew(self, handle: Callable[[T], Awaitable[None]]) -> Crew[T]:
        """Workers for one connection, each running `handle` on the items submitted."""
        return Crew(self, handle)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def lend(self, crew: Crew[T], item: T) -> None:
        """A worker for `crew`, starting on `item`: an idle one, else a new task."""
        if self._idle:
            worker = self._idle.pop()
            worker.crew, worker.item = crew, item
            crew.members.add(worker)
            if worker.wake is not None:
                wake(worker.wake)
            return
        worker = _Worker(crew, item)
        crew.members.add(worker)
        self.started += 1
        self._tg.start_soon(self._run, worker, name=self._name)

    async def _run(self, me: _Worker) -> None:
        # One coroutine level, `workers.Workers._work`'s loop inside: a level more would
        # cost every wake-up of every request a frame to pass through. One cancel scope
        # serves crew after crew (entering one costs about a quarter of a task's start);
        # a worker takes a new one only after a crew's close cancelled it.
        make = self._waker
        while True:
            with anyio.CancelScope() as scope:
                while True:
                    crew = me.crew
                    assert crew is not None
                    item, me.item = me.item, None
                    if crew.closed:  # lent as the connection closed: dropped, as if cancelled
                        item = None
                    handle, idle = crew.handle, crew.idle
                    me.scope = scope  # busy for `crew`: its close cancels the scope
                    try:
                        while item is not None:
                            await handle(item)
                            if crew.closed:
                                break
                            me.wake = waker = make()
                            idle.append(me)
                            try:
                                await waker
                            finally:
                                if me.item is None and me in idle:  # cancelled while idle
                                    idle.remove(me)
                            item, me.item = me.item, None  # None: the crew closed
                    finally:
                        me.scope = me.crew = None
                        crew.left(me)
                    if scope.cancel_called:
                        break  # out of the cancelled scope, before it strikes
                    if not await self._park(me):
                        return
            if not await self._park(me):
                return

    async def _park(self, me: _Worker) -> bool:
        """Wait in the reserve until lent (True), or end (False): closed, full, swept."""
        if self.closed or len(self._idle) >= self.max_idle:
            return False
        me.since = self._clock()
        me.wake = waker = self._waker()
        self._idle.append(me)
        try:
            await waker
        finally:
            if me.crew is None and me in self._idle:  # cancelled
                self._idle.remove(me)
        return me.crew is not None

    def sweep(self) -> int:
        """End the workers idle for a whole `idle_timeout`; how many."""
        cutoff = self._clock() - self.idle_timeout
        n = 0
        while n < len(self._idle) and self._idle[n].since <= cutoff:
            n += 1
        self._end(self._idle[:n])
        del self._idle[:n]
        return n

    async def sweep_every_idle_timeout(self) -> None:
        """`sweep` once per `idle_timeout`, until cancelled."""
        while True:
            await anyio.sleep(self.idle_timeout)
            self.sweep()

    def close(self) -> None:
        """End the idle workers; the busy ones end as their crews close."""
        self.closed = True
        idle, self._idle = self._idle, []
        self._end(idle)

    @staticmethod
    def _end(workers: list[_Worker]) -> None:
        for worker in workers:
            if worker.wake is not None:
                wake(worker.wake)
