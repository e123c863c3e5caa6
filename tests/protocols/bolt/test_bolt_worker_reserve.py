"""A Bolt server's workers outlive their connection: the next connection's requests run on
them, and a drained or cancelled server leaves none behind."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from bolt_support import raw_client, serving

from sofamesh.codecs.bolt import RequestFrame, ResponseFrame, reply, request
from sofamesh.protocols.bolt.server import BoltConnInfo, BoltServer

pytestmark = pytest.mark.anyio


def worker_tasks() -> set[int]:
    return {t.id for t in anyio.get_running_tasks() if t.name == "bolt worker"}


class Gate:
    """A handler whose calls wait for `open`, so that several are in flight at once;
    `all_in` is set once `expected` calls wait."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.all_in = anyio.Event()
        self.waiting = self.expected = 0

    async def __call__(self, frame: RequestFrame, _info: BoltConnInfo) -> ResponseFrame:
        self.waiting += 1
        if self.waiting == self.expected:
            self.all_in.set()
        await self.open.wait()
        return reply(frame, body=frame.body)


async def burst(port: int, gate: Gate, n: int) -> set[int]:
    """`n` calls in flight on a new connection, closed once they are answered; the worker
    tasks that ran them."""
    gate.waiting, gate.expected = 0, n
    async with raw_client(port) as peer:
        await peer.send(*(request(i, b"x") for i in range(1, n + 1)))
        await gate.all_in.wait()
        tasks = worker_tasks()
        gate.open.set()
        answered = [await peer.next_frame() for _ in range(n)]
        assert all(isinstance(f, ResponseFrame) for f in answered)
        assert isinstance(peer.stream, anyio.abc.SocketStream)
        await peer.stream.send_eof()
        assert await peer.closed()  # the server's side ended: its workers went back
    gate.open, gate.all_in = anyio.Event(), anyio.Event()
    return tasks


async def test_a_new_connection_runs_on_the_last_ones_workers() -> None:
    gate = Gate()
    server = BoltServer(gate)
    async with serving(server) as port:
        with anyio.fail_after(10):
            first = await burst(port, gate, 4)
            await anyio.wait_all_tasks_blocked()
            # the four calls', the writer's and the idle timer's; idle now, not ended
            assert (len(first), worker_tasks()) == (6, first)
            second = await burst(port, gate, 4)
        assert second == first  # no task started for the second connection
    assert worker_tasks() == set()


async def test_a_drained_server_returns_with_no_worker_left() -> None:
    gate = Gate()
    server = BoltServer(gate)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        with anyio.fail_after(10):
            assert len(await burst(port, gate, 3)) == 5  # with the writer and the timer
            await server.drain()
    assert worker_tasks() == set()  # `serve` returned by itself, its reserve emptied
