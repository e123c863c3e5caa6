"""A server's reserve of workers: a closed connection's workers serve the next one, the
reserve keeps at most `max_idle`, a sweep ends those idle a whole timeout, and closing or
cancelling ends them all."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from sofamesh.clock import FakeClock
from sofamesh.transport.reserve import WorkerReserve

pytestmark = pytest.mark.anyio


def worker_tasks() -> set[int]:
    return {t.id for t in anyio.get_running_tasks() if t.name == "worker"}


async def test_a_closed_crews_workers_serve_the_next_crew() -> None:
    release = anyio.Event()
    done: list[int] = []

    async def handle(item: int) -> None:
        await release.wait()
        done.append(item)

    async with anyio.create_task_group() as tg:
        reserve: WorkerReserve = WorkerReserve(tg)
        first = reserve.crew(handle)
        for i in range(3):
            first.submit(i)  # three at once: three workers
        await anyio.wait_all_tasks_blocked()
        tasks = worker_tasks()
        release.set()
        await anyio.wait_all_tasks_blocked()
        first.close()
        await first.wait_returned()
        await anyio.wait_all_tasks_blocked()
        assert (sorted(done), reserve.idle_count, reserve.started) == ([0, 1, 2], 3, 3)
        second = reserve.crew(handle)
        for i in range(3, 6):
            second.submit(i)
        await anyio.wait_all_tasks_blocked()
        assert (sorted(done), reserve.started, worker_tasks()) == (list(range(6)), 3, tasks)
        second.submit(6)  # its own idle worker, not the reserve's
        await anyio.wait_all_tasks_blocked()
        assert (reserve.started, reserve.idle_count, len(done)) == (3, 0, 7)
        second.close()
        await second.wait_returned()
        reserve.close()  # the idle workers end, so the task group can
    assert worker_tasks() == set()


async def test_closing_a_crew_cancels_its_busy_workers_and_takes_them_back() -> None:
    cancelled: list[int] = []

    async def handle(item: int) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(item)
            raise

    async with anyio.create_task_group() as tg:
        reserve: WorkerReserve = WorkerReserve(tg)
        crew = reserve.crew(handle)
        crew.submit(1)
        crew.submit(2)
        await anyio.wait_all_tasks_blocked()
        crew.close()
        with anyio.fail_after(5):
            await crew.wait_returned()
        assert (sorted(cancelled), reserve.idle_count) == ([1, 2], 2)
        served: list[int] = []

        async def record(item: int) -> None:
            await anyio.lowlevel.checkpoint()  # not cancelled: a new scope, not the old one
            served.append(item)

        crew = reserve.crew(record)
        crew.submit(3)
        crew.submit(4)
        await anyio.wait_all_tasks_blocked()
        assert (sorted(served), reserve.started) == ([3, 4], 2)
        crew.close()
        await crew.wait_returned()
        reserve.close()


async def test_a_worker_coming_back_to_a_full_reserve_ends() -> None:
    async def handle(item: int) -> None:
        await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        reserve: WorkerReserve = WorkerReserve(tg, max_idle=2)
        crew = reserve.crew(handle)
        for i in range(5):
            crew.submit(i)
        await anyio.wait_all_tasks_blocked()
        assert len(worker_tasks()) == 5
        crew.close()
        await crew.wait_returned()
        await anyio.wait_all_tasks_blocked()
        assert (reserve.idle_count, len(worker_tasks())) == (2, 2)
        reserve.close()


async def test_a_sweep_ends_the_workers_idle_a_whole_timeout() -> None:
    clock = FakeClock()

    async def handle(item: int) -> None:
        await anyio.lowlevel.checkpoint()

    async def lend(reserve: WorkerReserve, n: int) -> None:
        crew = reserve.crew(handle)
        for i in range(n):
            crew.submit(i)
        await anyio.wait_all_tasks_blocked()
        crew.close()
        await crew.wait_returned()

    async with anyio.create_task_group() as tg:
        reserve: WorkerReserve = WorkerReserve(tg, idle_timeout=90, clock=clock.now)
        await lend(reserve, 4)  # four idle since 1000
        clock.advance(60)
        await lend(reserve, 1)  # one of them used again, idle since 1060
        clock.advance(30)
        assert reserve.sweep() == 3  # idle since 1000: a whole timeout unused
        await anyio.wait_all_tasks_blocked()
        assert (reserve.idle_count, len(worker_tasks())) == (1, 1)
        assert reserve.sweep() == 0
        clock.advance(60)
        assert reserve.sweep() == 1
        await anyio.wait_all_tasks_blocked()
        assert (reserve.idle_count, worker_tasks()) == (0, set())
        await lend(reserve, 1)  # a new task once the reserve is empty
        assert reserve.started == 5
        reserve.close()


async def test_cancelling_the_task_group_ends_idle_and_busy_workers() -> None:
    async def handle(item: int) -> None:
        if item:
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        reserve: WorkerReserve = WorkerReserve(tg)
        done = reserve.crew(handle)
        done.submit(0)
        await anyio.wait_all_tasks_blocked()
        done.close()
        await done.wait_returned()
        busy = reserve.crew(handle)
        busy.submit(1)  # the idle worker
        busy.submit(1)  # a new one
        await anyio.wait_all_tasks_blocked()
        assert (reserve.idle_count, len(worker_tasks())) == (0, 2)
        tg.cancel_scope.cancel()
    assert (worker_tasks(), reserve.idle_count) == (set(), 0)


async def test_a_worker_lent_to_a_closed_crew_is_cancelled() -> None:
    ran: list[str] = []

    async def handle(item: int) -> None:
        await anyio.lowlevel.checkpoint()
        ran.append("finished")

    async with anyio.create_task_group() as tg:
        reserve: WorkerReserve = WorkerReserve(tg)
        crew = reserve.crew(handle)
        crew.submit(1)  # its task has not run yet
        crew.close()
        await crew.wait_returned()
        assert (ran, reserve.idle_count) == ([], 1)
        reserve.close()
