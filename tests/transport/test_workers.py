"""A multiplexed connection's workers: every item runs at once, idle workers are reused, and
closing or cancelling ends them."""

from __future__ import annotations

import anyio
import pytest

from sofamesh.transport.workers import Workers, event_class

pytestmark = pytest.mark.anyio


async def test_items_run_at_once_on_reused_workers() -> None:
    release = anyio.Event()
    done: list[int] = []

    async def handle(item: int) -> None:
        if item < 3:
            await release.wait()  # the first three block: the others must not wait for them
        done.append(item)

    async with anyio.create_task_group() as tg:
        workers: Workers[int] = Workers(tg, handle)
        for i in range(3):
            workers.submit(i)
        await anyio.wait_all_tasks_blocked()
        workers.submit(3)
        await anyio.wait_all_tasks_blocked()
        assert (done, workers.started) == ([3], 4)  # 3 ran beside the blocked ones
        release.set()
        await anyio.wait_all_tasks_blocked()
        for i in range(4, 8):  # four idle workers now: no new task for these
            workers.submit(i)
        await anyio.wait_all_tasks_blocked()
        assert (sorted(done), workers.started) == (list(range(8)), 4)
        workers.close()  # the idle workers return, so the task group can end


async def test_a_cancelled_idle_worker_leaves_the_idle_list() -> None:
    done: list[int] = []

    async def handle(item: int) -> None:
        done.append(item)

    async with anyio.create_task_group() as tg:
        workers: Workers[int] = Workers(tg, handle)
        workers.submit(1)
        await anyio.wait_all_tasks_blocked()
        assert len(workers._idle) == 1
        tg.cancel_scope.cancel()
    assert (done, workers._idle) == ([1], [])  # nothing would be handed to a dead worker


async def test_a_signal_wakes_its_waiter_once_set() -> None:
    make = event_class()
    woken: list[str] = []
    signal = make()

    async def wait() -> None:
        await signal.wait()
        woken.append("woken")

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert (woken, signal.is_set()) == ([], False)
        signal.set()
        signal.set()  # setting twice is harmless
    assert (woken, signal.is_set()) == (["woken"], True)
    already = make()
    already.set()
    with anyio.fail_after(1):
        await already.wait()  # set before the wait: returns at once


async def test_a_cancelled_wait_leaves_the_signal_unset() -> None:
    signal = event_class()()
    with anyio.move_on_after(0) as scope:
        await signal.wait()
    assert scope.cancelled_caught
    assert not signal.is_set()
    signal.set()  # the waiter is gone: nothing to wake, nothing raised
    assert signal.is_set()
