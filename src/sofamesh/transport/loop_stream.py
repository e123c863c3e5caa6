"""`LoopStream`: the asyncio TCP stream of our own, kept reading and written straight through.

Why it exists (docs/performance.md): anyio's asyncio stream pays, on every
`send`, a shielded cancel scope and one more trip round the event loop, and on
every `receive` a resume and a pause of the transport's reading (two
`epoll_ctl` calls on uvloop). `LoopStream` keeps the loop's transport reading
(up to `READ_LIMIT` buffered), hands `send` straight to the transport, and
waits only when there is nothing to read or the transport's write buffer is
over its high-water mark. `streams.py` hands it out and re-exports it; its
docstring says what stays the same as anyio's stream and what differs.

The loop's side of the stream, an `asyncio.Protocol`, is in `loop_protocol.py`:
this module does not import asyncio, so a process on trio, which names
`LoopStream` (`type(stream) is LoopStream`) but never makes one, does not load it.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.lowlevel import checkpoint, checkpoint_if_cancelled

READ_LIMIT = 256 * 1024  # bytes buffered from the peer before the transport stops reading
WRITE_HIGH_WATER = 64 * 1024  # bytes queued in the transport before `send` waits for a drain
CLOSE_LINGER = 5.0  # seconds a closed stream's queued bytes get before the socket is cut
_YIELD_EVERY = 32

if TYPE_CHECKING:
    import asyncio

    from sofamesh.transport.loop_protocol import LoopProtocol


def wake_waiter(waiter: asyncio.Future[None] | None) -> None:
    """Resolve `waiter` if it is still pending (a wait of the stream's, or none)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class LoopStream(anyio.abc.SocketStream):
    """An anyio socket stream over an asyncio transport, without anyio's per-call overhead."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, protocol: LoopProtocol
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._protocol = protocol
        self._closed = False
        self._receiving = False
        self._sending = False
        self._streak = 0  # receives in a row that returned without waiting
        # While a `time_limit` is in force: the loop time after which waits fail.
        # One timer per stream at most, armed lazily and re-armed when it fires
        # early, so a limit per request costs two assignments, not a timer.
        self.deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._extras: Mapping[Any, Callable[[], Any]] | None = None

    @property
    def _raw_socket(self) -> socket.socket:
        return self._transport.get_extra_info("socket")  # type: ignore[no-any-return]

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        # anyio builds this table afresh on every `extra()`, with a `getpeername` call; a
        # server asks for the peer's address several times per connection, so it is built
        # once per stream, and the addresses the transport already holds are used.
        table = self._extras
        if table is None:
            table = self._extras = self._attributes()
        return table

    def _attributes(self) -> dict[Any, Callable[[], Any]]:
        peer = self._transport.get_extra_info("peername")
        local = self._transport.get_extra_info("sockname")
        if not isinstance(peer, tuple) or not isinstance(local, tuple):
            return dict(super().extra_attributes)  # not an IP socket: anyio's own table
        sock = self._raw_socket
        return {
            SocketAttribute.raw_socket: lambda: sock,
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: lambda: local[:2],
            SocketAttribute.local_port: lambda: local[1],
            SocketAttribute.remote_address: lambda: peer[:2],
            SocketAttribute.remote_port: lambda: peer[1],
        }

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._receiving:
            raise anyio.BusyResourceError("reading from")
        p = self._protocol
        if p.chunks and self._streak < _YIELD_EVERY:
            self._streak += 1
            return self._take(p, max_bytes)
        self._streak = 0
        self._receiving = True
        try:
            if p.chunks:
                await checkpoint()
            while not p.chunks and not p.eof and not self._closed:
                if self.deadline != math.inf:
                    self._arm_timer()
                waiter = p.read_waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    p.read_waiter = None
        finally:
            self._receiving = False
        return self._take(p, max_bytes)

    def _take(self, p: LoopProtocol, max_bytes: int) -> bytes:
        if self._closed:
            raise anyio.ClosedResourceError
        chunks = p.chunks
        if not chunks:
            if p.error is not None:
                raise anyio.BrokenResourceError from p.error
            raise anyio.EndOfStream
        chunk = chunks.popleft()
        if len(chunk) > max_bytes:
            chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        p.buffered -= len(chunk)
        if p.reading_paused and p.buffered <= READ_LIMIT // 2 and not p.lost:
            p.reading_paused = False
            self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        if self._sending:
            raise anyio.BusyResourceError("writing to")
        p = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if p.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from p.error
        self._transport.write(item)
        if p.writing_paused:
            self._sending = True
            try:
                await self._drain(p)
            finally:
                self._sending = False

    def try_send(self, item: bytes) -> bool:
        """`send` without a coroutine when it would not wait: True if `item` was written.

        False: nothing was written (the stream is busy, closed or lost, or `item` would take
        its buffer past the high-water mark); `send` then writes it, waits or raises.
        """
        p, transport = self._protocol, self._transport
        if self._sending or self._closed or p.lost or p.writing_paused or transport.is_closing():
            return False
        if transport.get_write_buffer_size() + len(item) > WRITE_HIGH_WATER:
            return False
        transport.write(item)
        return True

    async def _drain(self, p: LoopProtocol) -> None:
        while p.writing_paused and not p.lost:
            if self.deadline != math.inf:
                self._arm_timer()
            waiter = p.drain_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                p.drain_waiter = None
        if self._closed:
            raise anyio.ClosedResourceError
        if p.lost:
            raise anyio.BrokenResourceError from p.error

    def limit(self, seconds: float) -> None:
        """Waits from now on raise TimeoutError once `seconds` have passed, until `deadline`
        is set back to `math.inf` (what `time_limit` does, without a context manager)."""
        self.deadline = self._loop.time() + seconds

    def _arm_timer(self) -> None:
        """Before a wait under a limit: TimeoutError if it has passed, else a timer by then."""
        deadline = self.deadline
        if deadline <= self._loop.time():
            raise TimeoutError
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._expire)
            self._timer_at = deadline

    def _expire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        p = self._protocol
        waiters = [w for w in (p.read_waiter, p.drain_waiter) if w is not None and not w.done()]
        if not waiters or self.deadline == math.inf:
            return  # nobody waits under a limit: the next wait arms a new timer
        if self.deadline <= self._loop.time():
            for w in waiters:
                w.set_exception(TimeoutError())
        else:  # the limit in force now is a later one than the timer was armed for
            self._timer = self._loop.call_at(self.deadline, self._expire)
            self._timer_at = self.deadline

    async def send_eof(self) -> None:
        if self._transport.can_write_eof() and not self._transport.is_closing():
            self._transport.write_eof()

    def abort(self) -> None:
        """Close at once, dropping bytes still queued: a forceful close without its cancel
        scope (anyio's `cancel()` formats the current task's repr, a tenth of an idle
        connection's whole cost when a flood of them is closed). A pending wait on the
        stream ends with `ClosedResourceError`."""
        if self._mark_closed():
            self._transport.abort()

    def _mark_closed(self) -> bool:
        """Mark the stream closed and wake its waits; False if it already was."""
        if self._closed:
            return False
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        p = self._protocol
        wake_waiter(p.read_waiter)
        wake_waiter(p.drain_waiter)
        return True

    async def aclose(self) -> None:
        """Close without waiting. Bytes still queued get `CLOSE_LINGER` seconds to leave, unless
        the close is forceful (`anyio.aclose_forcefully`, a cancelled scope): then they are
        dropped, as anyio's own stream does (the peer is likely not reading them anyway)."""
        if not self._mark_closed():
            return
        transport = self._transport
        if not transport.get_write_buffer_size():
            transport.close()
            return
        try:
            await checkpoint_if_cancelled()
        except BaseException:
            transport.abort()
            raise
        transport.close()
        self._loop.call_later(CLOSE_LINGER, transport.abort)
