"""Plain TCP between a redirected connection and where it was going, and hand-offs to servers."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio
import anyio.abc

from sofamesh.transport.streams import LoopStream
from sofamesh.transport.tls import LOST

BUFFER = 65536


async def relay(a: anyio.abc.ByteStream, b: anyio.abc.ByteStream) -> None:
    """Copy both ways until both sides have finished; half-closes are passed on."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_copy, a, b)
        tg.start_soon(_copy, b, a)


async def _copy(src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream) -> None:
    try:
        while True:
            await dst.send(await src.receive(BUFFER))
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
