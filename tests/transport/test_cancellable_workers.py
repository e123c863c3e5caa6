"""Workers whose running handler can be cancelled through the cancel scope each worker keeps."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from sofamesh.transport.workers import CancellableWorkers

pytestmark = pytest.mark.anyio

Cancel = Callable[[], None]


async def test_a_cancelled_handler_ends_and_its_worker_runs_the_next_item() -> None:
    cancels: dict[int, Cancel] = {}
    ended: list[tuple[int, str]] = []

    async def handle(item: int, cancel: Cancel) -> None:
        cancels[item] = cancel
        try:
            if item == 1:
                await anyio.sleep_forever()
            await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            ended.append((item, "cancelled"))
            raise
        ended.append((item, "done"))

    async with anyio.create_task_group() as tg:
        workers: CancellableWorkers[int] = CancellableWorkers(tg, handle)
        workers.submit(1)
        await anyio.wait_all_tasks_blocked()
        cancels[1]()
        await anyio.wait_all_tasks_blocked()
        assert ended == [(1, "cancelled")]
        workers.submit(2)  # the same worker, in a new scope: not cancelled
        await anyio.wait_all_tasks_blocked()
        workers.submit(3)  # and its scope is reused while nobody cancels
        await anyio.wait_all_tasks_blocked()
        assert (ended[1:], workers.started) == ([(2, "done"), (3, "done")], 1)
        workers.close()


async def test_cancelling_one_handler_leaves_the_others_running() -> None:
    cancels: dict[int, Cancel] = {}
    release = anyio.Event()
    ended: list[int] = []

    async def handle(item: int, cancel: Cancel) -> None:
        cancels[item] = cancel
        await release.wait()
        ended.append(item)

    async with anyio.create_task_group() as tg:
        workers: CancellableWorkers[int] = CancellableWorkers(tg, handle)
        for i in range(3):
            workers.submit(i)
        await anyio.wait_all_tasks_blocked()
        cancels[1]()
        await anyio.wait_all_tasks_blocked()
        release.set()
        await anyio.wait_all_tasks_blocked()
        assert (sorted(ended), workers.started) == ([0, 2], 3)
        workers.close()


async def test_a_handler_that_outlives_its_cancel_leaves_the_next_item_uncancelled() -> None:
    """A cancelled scope is spent: a handler that finishes shielded returns normally, and the
    worker must not run its next item in the cancelled scope."""
    cancels: dict[int, Cancel] = {}
    ended: list[tuple[int, bool]] = []

    async def handle(item: int, cancel: Cancel) -> None:
        cancels[item] = cancel
        if item == 1:
            cancel()
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()
        try:
            await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            ended.append((item, True))
            if item == 1:
                return  # swallowed: the handler returns normally
            raise
        ended.append((item, False))

    async with anyio.create_task_group() as tg:
        workers: CancellableWorkers[int] = CancellableWorkers(tg, handle)
        workers.submit(1)
        await anyio.wait_all_tasks_blocked()
        workers.submit(2)
        await anyio.wait_all_tasks_blocked()
        assert (ended, workers.started) == ([(1, True), (2, False)], 1)
        workers.close()


async def test_closing_ends_idle_workers_and_busy_ones_after_their_item() -> None:
    release = anyio.Event()
    ended: list[int] = []

    async def handle(item: int, cancel: Cancel) -> None:
        if item:
            await release.wait()
        ended.append(item)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            workers: CancellableWorkers[int] = CancellableWorkers(tg, handle)
            workers.submit(0)
            workers.submit(1)
            await anyio.wait_all_tasks_blocked()
            workers.close()
            release.set()
    assert sorted(ended) == [0, 1]
