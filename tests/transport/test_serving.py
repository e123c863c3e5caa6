"""The accept loop every server shares: errors slow it down, closing the listener ends it."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import pytest

from sofamesh.transport.serving import ServerLifecycle, accept_until_closed
from sofamesh.transport.streams import connect_tcp

pytestmark = pytest.mark.anyio


class FlakyListener(anyio.abc.Listener[anyio.abc.SocketStream]):
    """A real TCP listener whose first accept fails as if the process ran out of descriptors."""

    def __init__(self, inner: anyio.abc.SocketListener) -> None:
        self.inner = inner
        self.failures = 1

    async def accept(self) -> anyio.abc.SocketStream:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return await self.inner.accept()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def serve(
        self,
        handler: Callable[[anyio.abc.SocketStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        await self.inner.serve(handler, task_group)


async def test_an_accept_error_is_logged_and_the_next_connection_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = multi.extra(anyio.abc.SocketAttribute.local_port)
    inner = multi.listeners[0]
    assert isinstance(inner, anyio.abc.SocketListener)
    listener = FlakyListener(inner)
    served = anyio.Event()

    async def handler(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(b"hi")
        served.set()

    with caplog.at_level(logging.WARNING, "sofamesh.transport"), anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(accept_until_closed, listener, tg, handler, "test")
            client = await connect_tcp("127.0.0.1", port)
            await served.wait()
            assert await client.receive() == b"hi"
            await client.aclose()
            await listener.aclose()  # ends the loop, and with it the task group
    assert "test accept failed" in caplog.text and "Too many open files" in caplog.text


async def test_the_lifecycle_admits_up_to_max_connections_then_drains() -> None:
    life: ServerLifecycle[anyio.abc.ByteStream] = ServerLifecycle("test", max_connections=1)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    admitted, release = anyio.Event(), anyio.Event()

    async def admit(stream: anyio.abc.ByteStream) -> None:
        if not await life.admit(stream):
            return
        life.conns.add(stream)
        admitted.set()
        await release.wait()
        life.conns.discard(stream)
        await stream.aclose()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(life.serve, listener, admit)
            first = await connect_tcp("127.0.0.1", port)
            await admitted.wait()
            second = await connect_tcp("127.0.0.1", port)
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await second.receive()  # refused: closed on accept
            life.begin_drain()
            release.set()
            await life.wait_stopped()
            await first.aclose()
            await second.aclose()
    assert (life.accepted, life.rejected, len(life.conns), life.draining) == (1, 1, 0, True)
    with pytest.raises(OSError):
        await connect_tcp("127.0.0.1", port)  # drained: the listener is closed
