"""`LoopProtocol`: the loop's side of a `LoopStream`, an `asyncio.Protocol`.

Apart from `loop_stream.py` because it subclasses asyncio's class: `streams.py`
imports it where it makes a `LoopStream` (on asyncio only), so a process on
trio never loads asyncio for it (docs/performance.md, "Idle RSS on trio").
"""

from __future__ import annotations

import asyncio
import collections
from typing import cast

from sofamesh.transport.loop_stream import READ_LIMIT, WRITE_HIGH_WATER, wake_waiter


class LoopProtocol(asyncio.Protocol):
    """The loop's side: buffers what arrives and wakes whoever waits on the stream."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False  # the peer will send no more (EOF, or the connection is gone)
        self.lost = False  # the connection is gone
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_LIMIT and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        waiter = self.read_waiter  # `wake_waiter` inline: this runs for every read
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        wake_waiter(self.read_waiter)
        return True  # keep our half open: a response may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self.error = exc
        wake_waiter(self.read_waiter)
        wake_waiter(self.drain_waiter)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        wake_waiter(self.drain_waiter)
