"""DeadlineWatch's count of armed deadlines, which decides when its heap is compacted."""

from __future__ import annotations

import anyio
import pytest

from sofamesh.deadlines import DeadlineWatch

pytestmark = pytest.mark.anyio


class _Woken:
    def __init__(self) -> None:
        self.event = anyio.Event()

    def cancel(self) -> None:
        self.event.set()


async def test_a_fired_deadline_removed_by_its_owner_is_counted_once() -> None:
    watch = DeadlineWatch()
    async with anyio.create_task_group() as tg:
        await tg.start(watch.run)
        kept = watch.add(watch.time_in(60.0), _Woken())
        for _ in range(3):
            woken = _Woken()
            entry = watch.add(watch.time_in(0.0), woken)
            with anyio.fail_after(5):
                await woken.event.wait()
            watch.remove(entry)  # as a woken waiter lets its deadline go
            assert watch._live == 1  # `kept` alone; a double count made it go negative
        watch.remove(kept)
        assert watch._live == 0
        tg.cancel_scope.cancel()


async def test_a_watch_asleep_with_nothing_armed_wakes_for_the_next_deadline() -> None:
    """With nothing armed the watch waits for `add` alone (an idle process's watch does not
    wake once a second); a deadline added then, or after the last one was removed, fires."""
    watch = DeadlineWatch()
    async with anyio.create_task_group() as tg:
        await tg.start(watch.run)
        await anyio.wait_all_tasks_blocked()  # asleep, nothing armed
        first = _Woken()
        watch.add(watch.time_in(0.01), first)
        with anyio.fail_after(5):
            await first.event.wait()
        gone = watch.add(watch.time_in(0.01), _Woken())
        watch.remove(gone)  # removed before its time: dropped, and the watch sleeps again
        await anyio.wait_all_tasks_blocked()
        assert not watch._heap
        second = _Woken()
        watch.add(watch.time_in(0.0), second)
        with anyio.fail_after(5):
            await second.event.wait()
        tg.cancel_scope.cancel()
