"""Plain TCP between a redirected connection and where it was going, and hand-offs to servers."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import anyio
import anyio.abc

from sofamesh.transport.streams import LoopStream
from sofamesh.transport.tls import LOST

BUFFER = 65536


class Tally(Protocol):
    """Where a relay counts its connection and the bytes it moves (Istio's TCP series)."""

    opened: int
    closed: int
    received: int  # from the side that connected
    sent: int  # back to it


class _Untallied:
    """No counters: the relay adds to these and nothing reads them."""

    __slots__ = ("closed", "opened", "received", "sent")

    def __init__(self) -> None:
        self.opened = self.closed = self.received = self.sent = 0


async def relay(
    a: anyio.abc.ByteStream,
    b: anyio.abc.ByteStream,
    first: bytes = b"",
    tally: Tally | None = None,
) -> None:
    """Send `first` (bytes of `a` already read) to `b`, then copy both ways until both sides
    have finished; half-closes are passed on. `tally` counts the bytes as they pass."""
    counts = _Untallied() if tally is None else tally
    counts.opened += 1
    try:
        if first:
            await b.send(first)
            counts.received += len(first)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_copy, a, b, counts, True)
            tg.start_soon(_copy, b, a, counts, False)
    except LOST:  # `b` went away before taking the first bytes (`_copy` handles the rest)
        return
    finally:
        counts.closed += 1


async def _copy(
    src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream, counts: Tally, inward: bool
) -> None:
    try:
        while True:
            data = await src.receive(BUFFER)
            await dst.send(data)
            # Counted once passed on: the length of the buffer moved, no copy of it.
            if inward:
                counts.received += len(data)
            else:
                counts.sent += len(data)
    except anyio.EndOfStream:
        with contextlib.suppress(*LOST):
            await dst.send_eof()
    except LOST:  # one side reset: the other goes too
        await anyio.aclose_forcefully(src)
        await anyio.aclose_forcefully(dst)


class Sniffed(anyio.abc.ByteStream):
    """A redirected connection whose first bytes were read to sniff it, given back to the
    next reader; it reports the original destination as its local address, so a server's
    per-connection information names what the app dialled."""

    def __init__(
        self, inner: anyio.abc.ByteStream, prefix: bytes, original: tuple[str, int] | None
    ) -> None:
        self._inner = inner
        self._prefix = prefix
        self._original = original
        # Past the sniffed bytes every call goes straight to the connection: no frame of ours.
        self.send = inner.send  # type: ignore[method-assign]
        if not prefix:
            self.receive = inner.receive  # type: ignore[method-assign]

    @property
    def loop_stream(self) -> LoopStream | None:
        """The asyncio stream below, whose own timer bounds reads (`streams.time_limit`)."""
        inner = self._inner
        if type(inner) is LoopStream:
            return inner
        # A terminated TLS stream: its own TCP stream's timer.
        under: LoopStream | None = getattr(inner, "loop_stream", None)
        return under

    async def receive(self, max_bytes: int = BUFFER) -> bytes:
        if len(self._prefix) > max_bytes:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        data = self._prefix
        self.receive = self._inner.receive  # type: ignore[method-assign]
        return data

    async def send(self, item: bytes) -> None:
        await self._inner.send(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attrs: dict[Any, Callable[[], Any]] = {**self._inner.extra_attributes}
        if self._original is not None:
            original = self._original
            attrs[anyio.abc.SocketAttribute.local_address] = lambda: original
        return attrs


class Handoff(anyio.abc.SocketListener):
    """A listener fed by hand: sniffed connections go to the server that serves them.

    A `SocketListener` with no socket, so every protocol's server (some take only
    socket listeners) accepts from it as from a port.
    """

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[anyio.abc.ByteStream](64)

    async def hand_over(self, stream: anyio.abc.ByteStream) -> None:
        try:
            await self._send.send(stream)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            await anyio.aclose_forcefully(stream)

    async def accept(self) -> anyio.abc.SocketStream:
        try:
            return cast(anyio.abc.SocketStream, await self._receive.receive())
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise anyio.ClosedResourceError from None

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()

    @property
    def _raw_socket(self) -> socket.socket:
        raise AttributeError("a hand-off listener has no socket")

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {}  # no socket: servers take the `accept()` path
