"""The link between a main process and a worker: its caps and its bounded queue.

Both ends in the test's process, over a real Unix socket pair; the processes themselves
are in test_sidecar_workers.py and test_sidecar_workers_bounds.py.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from sofamesh.config import MeshConfig
from sofamesh.config.control_urls import DEFAULT_MAX_DOCUMENT_BYTES
from sofamesh.config.structure import structure
from sofamesh.sidecar.worker_link import ENVELOPE, Link, link_cap
from sofamesh.transport.handover import Channel, MessageError

pytestmark = pytest.mark.anyio
CAP = 64 * 1024


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[Channel, Channel]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a = Channel(await anyio.abc.UNIXSocketStream.from_socket(ours), CAP)
    b = Channel(await anyio.abc.UNIXSocketStream.from_socket(theirs), CAP)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def nothing(_message: dict[str, Any]) -> dict[str, Any] | None:
    return None


def test_the_cap_is_the_largest_rules_document_the_sidecar_takes_and_its_envelope() -> None:
    files = structure(MeshConfig, {"app": "a", "workers": 2})
    assert link_cap(files) == DEFAULT_MAX_DOCUMENT_BYTES + ENVELOPE
    control = {"urls": "http://127.0.0.1:1", "max_document_bytes": 16 << 20}
    pushed = structure(MeshConfig, {"app": "a", "control": control})
    assert link_cap(pushed) == (16 << 20) + ENVELOPE
    smaller = structure(MeshConfig, {"app": "a", "control": {**control, "max_document_bytes": 1}})
    assert link_cap(smaller) == DEFAULT_MAX_DOCUMENT_BYTES + ENVELOPE  # snapshots still fit


async def test_a_message_over_the_cap_is_refused_to_the_poster_and_the_link_carries_on() -> None:
    got: list[dict[str, Any]] = []

    async def keep(message: dict[str, Any]) -> dict[str, Any] | None:
        got.append(message)
        return None

    async with pair() as (a, b):
        main, worker = Link(a, nothing, "main"), Link(b, keep, "worker")
        async with anyio.create_task_group() as tg:
            tg.start_soon(main.run)
            tg.start_soon(worker.run)
            with pytest.raises(MessageError, match="over the cap"):
                main.post({"rules": "x" * CAP})
            main.post({"rules": "small"})
            assert await main.ask("ping") == {"reply": 1, "fds": 0}
            assert [m.get("rules", m.get("ask")) for m in got] == ["small", "ping"]
            tg.cancel_scope.cancel()
    assert main.stalled is None


@pytest.mark.parametrize(("size", "bound"), [(100, "messages queued"), (30_000, "bytes queued")])
async def test_an_end_that_reads_nothing_fills_a_bounded_queue_and_the_link_gives_up(
    size: int, bound: str
) -> None:
    async with pair() as (a, _silent):  # the other end never reads: a stopped process
        link = Link(a, nothing, "worker 0")
        message = {"snapshot": "s", "endpoints": ["e" * size]}
        posted = 0
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                while link.stalled is None:
                    link.post(message)
                    posted += 1
                    assert link.queued_bytes <= link.max_queued_bytes
                    await anyio.lowlevel.checkpoint()  # the writer sends what the socket takes
        # `run` returned by itself: the kernel's buffer, then the queue, filled.
        assert link.stalled is not None and bound in link.stalled, link.stalled
        assert posted * size < 8 * link.max_queued_bytes  # what it held stayed bounded
        link.post(message)  # a link that gave up drops what is posted
