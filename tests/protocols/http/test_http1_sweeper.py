"""The HTTP/1.1 server's timeout sweep: asleep with no connection, awake with one."""

from __future__ import annotations

import time

import anyio
import pytest
from anyio.lowlevel import checkpoint

from sofamesh.protocols.http.sweeper import Sweeper

pytestmark = pytest.mark.anyio


class _Conn:
    """A connection whose every check is recorded; it may leave after its first."""

    def __init__(self, conns: set[_Conn], *, leaves: bool = False) -> None:
        self.conns = conns
        self.leaves = leaves
        self.checked = anyio.Event()

    def check(self, now: float) -> None:
        self.checked.set()
        if self.leaves:
            self.conns.discard(self)


async def test_with_no_connection_the_sweep_waits_for_one() -> None:
    conns: set[_Conn] = set()
    sweeper = Sweeper(conns, 0.001, time.monotonic)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sweeper.run, lambda: None)
        await anyio.wait_all_tasks_blocked()
        # A sweep on a timer would be asleep in `sleep` here, not waiting for a connection.
        assert sweeper.waiting
        conn = _Conn(conns)
        conns.add(conn)
        sweeper.wake()
        with anyio.fail_after(5):
            await conn.checked.wait()
        assert not sweeper.waiting
        sweeper.stop()


async def test_the_sweep_sleeps_again_once_the_last_connection_is_gone() -> None:
    conns: set[_Conn] = set()
    sweeper = Sweeper(conns, 0.001, time.monotonic)
    conn = _Conn(conns, leaves=True)
    conns.add(conn)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sweeper.run, lambda: None)
        with anyio.fail_after(5):
            await conn.checked.wait()
        await anyio.wait_all_tasks_blocked()
        assert sweeper.waiting and not conns
        sweeper.stop()


async def test_stop_ends_a_waiting_sweep_and_each_sweep_of_many() -> None:
    conns: set[_Conn] = set()
    sweeper = Sweeper(conns, 0.001, time.monotonic)
    ready: list[int] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in range(3):  # one sweep per listener
                tg.start_soon(sweeper.run, lambda n=n: ready.append(n))
            await anyio.wait_all_tasks_blocked()
            assert sorted(ready) == [0, 1, 2] and sweeper.waiting
            sweeper.stop()
            await checkpoint()
