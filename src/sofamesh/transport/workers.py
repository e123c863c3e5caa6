"""Worker tasks a multiplexed connection (Bolt, Dubbo, HTTP/2) reuses, one per request in flight.

Each request runs in a task of its own, so a slow one holds up nothing, but tasks are
reused: starting an anyio task costs 13-17 µs. Every submitted item runs at once, on an
idle worker if there is one, else on a new one, so the pool grows to the peak
concurrency and nothing waits behind another. An idle worker waits on an event of its
own and `submit` sets it, where an anyio memory stream tries a receive that raises,
builds a generic receiver object and checkpoints (about a sixth of a proxied call's CPU
in profiles of the sidecar).

The events are one-waiter signals (`Signal`): on asyncio a bare future of the running
loop, which the C implementation creates, awaits and resolves, where `anyio.Event` adds
its wrapper, `asyncio.Event`'s Python code and a running-loop look-up per wait (a
`getpid` system call on Python 3.11); on trio the backend's `anyio.Event`. The workers'
own wake-ups, one per request, go further (`Waker`): on asyncio the future itself, awaited
and resolved without a wrapper object or a Python frame around the wait.

`CancellableWorkers` (HTTP/2 streams) also lets a running handler be cancelled, through
one cancel scope per worker rather than one per item.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.abc

T = TypeVar("T")


class Signal(Protocol):
    """What a one-waiter event offers: `set` from anywhere, `wait` from one task."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[None]: ...


class _FutureSignal:
    """A `Signal` on an asyncio future. One waiter only: cancelling the wait cancels the
    future, after which `set` only marks the signal set."""

    __slots__ = ("_fut", "_set")

    def __init__(self, fut: asyncio.Future[None]) -> None:
        self._fut = fut
        self._set = False

    def set(self) -> None:
        self._set = True
        if not self._fut.done():
            self._fut.set_result(None)

    def is_set(self) -> bool:
        return self._set

    def wait(self) -> asyncio.Future[None]:
        return self._fut  # awaited as it is: no coroutine frame around the wait


def event_class() -> Callable[[], Signal]:
    """A maker of one-waiter events for the running loop. `anyio.Event()` looks the
    backend up on every call (2.4 µs on uvloop), and a multiplexed connection makes a
    few events per call. Call it from the event loop; use each event from that loop."""
    try:
        create = asyncio.get_running_loop().create_future
    except RuntimeError:  # not asyncio: trio
        return type(anyio.Event())

    def make() -> Signal:
        return _FutureSignal(create())

    return make


class Waker(Protocol):
    """The part of an asyncio future a one-waiter wake-up uses: awaited by one task,
    resolved with `set_result(None)` once unless `done()` (a cancelled wait is done)."""

    def done(self) -> bool: ...
    def set_result(self, result: None, /) -> None: ...
    def __await__(self) -> Generator[Any, None, None]: ...


class _EventWaker:
    """A `Waker` on an anyio event, for trio."""

    __slots__ = ("_event",)

    def __init__(self, event: anyio.Event) -> None:
        self._event = event

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, result: None, /) -> None:
        self._event.set()

    def __await__(self) -> Generator[Any, None, None]:
        return self._event.wait().__await__()


def waker_class() -> Callable[[], Waker]:
    """A maker of `Waker`s for the running loop: its `create_future` on asyncio. Call it
    from the event loop; use each waker from that loop."""
    try:
        return asyncio.get_running_loop().create_future
    except RuntimeError:  # not asyncio: trio
        event = type(anyio.Event())
        return lambda: _EventWaker(event())


def wake(waker: Waker) -> None:
    """Resolve `waker` unless its wait was cancelled (or it was woken already)."""
    if not waker.done():
        waker.set_result(None)


class _Worker(Generic[T]):
    __slots__ = ("item", "wake")

    def __init__(self) -> None:
        self.item: T | None = None
        self.wake: Waker | None = None


class _WorkerPool(abc.ABC, Generic[T]):
    """What both kinds of pool share: the idle workers, the hand-off of an item to one of
    them (or to a new task in `tg`), and `close`. Each kind runs its own `_work` loop."""

    def __init__(self, tg: anyio.abc.TaskGroup, name: str) -> None:
        self._tg = tg
        self._name = name
        self._idle: list[_Worker[T]] = []
        self._waker = waker_class()
        self._closed = False
        self.started = 0

    def submit(self, item: T) -> None:
        if self._idle:
            worker = self._idle.pop()
            worker.item = item
            waker = worker.wake
            if waker is not None and not waker.done():
                waker.set_result(None)
        else:
            self.started += 1
            self._tg.start_soon(self._work, item, name=self._name)

    @abc.abstractmethod
    async def _work(self, item: T) -> None:
        """A worker's life: `item`, then every item handed to it while idle, until closed."""

    def close(self) -> None:
        """Idle workers return; busy ones return after their item."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            if worker.wake is not None:
                wake(worker.wake)


class Workers(_WorkerPool[T]):
    """Runs `handle(item)` for every submitted item at once, on tasks it reuses. Workers
    live in `tg` until it is cancelled or `close()` is called."""

    def __init__(
        self, tg: anyio.abc.TaskGroup, handle: Callable[[T], Awaitable[None]], name: str = "worker"
    ) -> None:
        super().__init__(tg, name)
        self._handle = handle

    async def _work(self, item: T) -> None:
        me: _Worker[T] = _Worker()
        make = self._waker
        while True:
            await self._handle(item)
            if self._closed:
                return
            me.wake = waker = make()
            self._idle.append(me)
            try:
                await waker
            finally:
                if me.item is None and me in self._idle:  # cancelled while idle
                    self._idle.remove(me)
            if me.item is None:  # closed
                return
            item, me.item = me.item, None


class CancellableWorkers(_WorkerPool[T]):
    """`Workers` whose running handler can be cancelled: `handle(item, cancel)` gets the
    `cancel` of its worker's cancel scope, good until the handler returns.

    A worker keeps one cancel scope for every item it runs, where a handler that
    entered a scope of its own per item (to be cancelled when an HTTP/2 stream is
    reset) paid for building, entering and leaving it each time (anyio's asyncio
    scope: about 20k instructions). A cancelled scope is spent: the worker leaves
    it once the handler returned and enters a new one for its next item. The
    handler must stop using `cancel` when it returns (a late `cancel` would end the
    worker's next item)."""

    def __init__(
        self,
        tg: anyio.abc.TaskGroup,
        handle: Callable[[T, Callable[[], None]], Awaitable[None]],
        name: str = "worker",
    ) -> None:
        super().__init__(tg, name)
        self._run = handle
        self._scope = type(anyio.CancelScope())  # the backend's class, looked up once

    async def _work(self, item: T) -> None:
        me: _Worker[T] = _Worker()
        run, make = self._run, self._waker
        while True:
            with self._scope() as scope:
                cancel = scope.cancel
                while True:
                    await run(item, cancel)
                    if self._closed:
                        return
                    if scope.cancel_called:
                        break  # spent: the next item runs in a new scope
                    me.wake = waker = make()
                    self._idle.append(me)
                    try:
                        await waker
                    finally:
                        if me.item is None and me in self._idle:  # cancelled while idle
                            self._idle.remove(me)
                    if me.item is None:  # closed
                        return
                    item, me.item = me.item, None
            next_item = await self._next_item(me)
            if next_item is None:
                return
            item = next_item

    async def _next_item(self, me: _Worker[T]) -> T | None:
        """The worker's next item once it is idle; None once the pool closed."""
        me.wake = waker = self._waker()
        self._idle.append(me)
        try:
            await waker
        finally:
            if me.item is None and me in self._idle:  # cancelled while idle
                self._idle.remove(me)
        item, me.item = me.item, None
        return item
