"""What both ends of a Bolt (or Dubbo) connection share: a frame writer that many tasks feed.

Bolt multiplexes: many calls share one connection, and their frames are written by
whichever task finishes first. anyio streams refuse concurrent sends, so every frame goes
through one `FrameWriter`: tasks append encoded frames without waiting (heartbeat acks
and error replies need no task of their own), and the writer task sends whatever piled
up in one `send`, so a busy connection pays one system call for many frames. Its
wake-up is a `transport.workers.Waker` (on asyncio a bare future: one per burst, and
every frame queued checks it, without a Python call, in C).
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc
import anyio.lowlevel

from sofamesh.transport.budget import OVERLOAD
from sofamesh.transport.net import STREAM_ERRORS
from sofamesh.transport.workers import wake, waker_class

log = logging.getLogger("sofamesh.bolt")

DEFAULT_MAX_BUFFERED = 4 << 20  # bytes queued for the socket before writers wait
_MAX_BATCH = 256 << 10  # bytes joined into one send


class WriterClosedError(Exception):
    """The connection's writer stopped: its stream failed or the connection closed."""


class FrameWriter:
    """One writer task per connection; `write_nowait` / `write` from any task."""

    __slots__ = (
        "_closed", "_counting", "_finishing", "_max", "_pending", "_room", "_stream", "_wake",
        "_waker", "buffered", "finished",
    )  # fmt: skip

    def __init__(
        self, stream: anyio.abc.ByteSendStream, max_buffered: int = DEFAULT_MAX_BUFFERED
    ) -> None:
        self._stream = stream
        self._max = max_buffered
        self._pending: list[bytes] = []
        self.buffered = 0  # bytes queued (read-only: an attribute, read per frame)
        self._waker = waker_class()  # made where the writer is, on its loop
        self._wake = self._waker()
        self._room: anyio.Event | None = None
        self._closed = False
        self._finishing = False
        self._counting = True  # queued bytes count in the buffer budget until `run` ends
        self.finished = anyio.Event()  # set when `run` returns

    def write_nowait(self, data: bytes) -> None:
        """Queue `data` (one or more whole frames); it is sent in order."""
        if self._closed:
            raise WriterClosedError("the connection is closed")
        self._pending.append(data)
        n = len(data)
        self.buffered += n
        if self._counting:  # queued frames count against the process's buffer budget
            OVERLOAD.held += n
        waker = self._wake
        if not waker.done():
            waker.set_result(None)

    async def write(self, data: bytes) -> None:
        """Queue `data`, then wait while more than `max_buffered` bytes are queued."""
        self.write_nowait(data)
        while self.buffered > self._max and not self._closed:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        if self._closed:
            raise WriterClosedError("the connection closed before the frame was sent")

    async def run(self) -> None:
        """Send queued frames until `finish()` (then return once all is sent), cancellation,
        or a failed stream (then refuse new frames)."""
        try:
            while True:
                await self._wake
                # Let the other tasks that are ready run first: a burst of responses
                # then leaves in one send instead of one system call each.
                await anyio.lowlevel.checkpoint()
                self._wake = self._waker()
                await self._flush()
                if self._finishing:
                    return
        except STREAM_ERRORS as exc:
            log.debug("bolt writer stopped: %r", exc)
            self.close()
        finally:
            # Whatever is still queued will not be sent by us: it leaves the budget now,
            # however the owner ends the connection.
            if self._counting:
                self._counting = False
                OVERLOAD.held -= self.buffered
            self.finished.set()

    def finish(self) -> None:
        """Ask `run` to send what is queued and return (a connection closing cleanly)."""
        self._finishing = True
        wake(self._wake)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            size = sum(map(len, batch))
            if size > _MAX_BATCH and len(batch) > 1:  # keep each send bounded
                cut, size = _cut(batch)
                batch, self._pending = batch[:cut], batch[cut:] + self._pending
            await self._stream.send(batch[0] if len(batch) == 1 else b"".join(batch))
            if self._closed:
                return  # `close` already took everything queued off the budget
            self.buffered -= size
            if self._counting:
                OVERLOAD.held -= size
            if self._room is not None and self.buffered <= self._max:
                self._room.set()
                self._room = None

    def close(self) -> None:
        """Refuse new frames and wake whoever waits for room."""
        self._closed = True
        self._pending.clear()
        if self._counting:
            OVERLOAD.held -= self.buffered
        self.buffered = 0
        if self._room is not None:
            self._room.set()
            self._room = None


def _cut(batch: list[bytes]) -> tuple[int, int]:
    """How many frames from the front of `batch` make one send, and their size."""
    size = 0
    for i, item in enumerate(batch):
        size += len(item)
        if size >= _MAX_BATCH:
            return i + 1, size
    return len(batch), size
