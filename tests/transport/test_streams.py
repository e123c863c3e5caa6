"""The transports' byte streams: anyio's contract, whichever stream the backend gets."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from sofamesh.transport.streams import (
    WRITE_HIGH_WATER,
    LoopStream,
    accept,
    connect_tcp,
    serve_accepted,
    time_limit,
    try_send,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """These streams also run on uvloop, whose transports differ from asyncio's own."""
    return request.param


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]]:
    """A connected (client, server) pair, both made by this module."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as multi:
        port = multi.extra(anyio.abc.SocketAttribute.local_port)
        listener = multi.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        accepted: list[anyio.abc.SocketStream] = []
        async with anyio.create_task_group() as tg:

            async def take() -> None:
                accepted.append(await (await accept(listener)).open())

            tg.start_soon(take)
            client = await connect_tcp("127.0.0.1", port)
        async with client, accepted[0] as server:
            yield client, server


async def read_exactly(stream: anyio.abc.ByteStream, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        got += await stream.receive()
    return bytes(got)


async def test_the_asyncio_backend_gets_the_loop_stream(anyio_backend_name: str) -> None:
    async with pair() as (client, server):
        expected = anyio_backend_name == "asyncio"
        assert isinstance(client, LoopStream) is expected
        assert isinstance(server, LoopStream) is expected
        assert client.extra(anyio.abc.SocketAttribute.remote_address) == server.extra(
            anyio.abc.SocketAttribute.local_address
        )
        assert client.extra(anyio.abc.SocketAttribute.raw_socket).getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )


async def test_megabytes_cross_both_ways_at_once_intact() -> None:
    # Larger than every buffer on the way (the read limit, the write high-water
    # mark, the kernel's), so reading pauses and writing waits for drains.
    up = bytes(range(256)) * (5 * 4096)
    down = bytes(reversed(range(256))) * (3 * 4096)
    async with pair() as (client, server), anyio.create_task_group() as tg:
        results: dict[str, bytes] = {}

        async def echo_side() -> None:
            results["server got"] = await read_exactly(server, len(up))

        async def server_sends() -> None:
            await server.send(down)

        tg.start_soon(echo_side)
        tg.start_soon(server_sends)
        await client.send(up)
        results["client got"] = await read_exactly(client, len(down))
    assert results == {"server got": up, "client got": down}


async def test_max_bytes_splits_a_chunk_and_keeps_the_rest() -> None:
    async with pair() as (client, server):
        await client.send(b"abcdefgh")
        got = await server.receive(3)
        rest = await read_exactly(server, 5)
        assert (got, rest) == (b"abc", b"defgh")


async def test_try_send_writes_what_would_not_wait_and_leaves_the_rest_to_send(
    anyio_backend_name: str,
) -> None:
    async with pair() as (client, server):
        on_loop = anyio_backend_name == "asyncio"
        assert try_send(client, b"small") is on_loop  # trio's streams always take `send`
        if not on_loop:
            await client.send(b"small")
        big = b"x" * (WRITE_HIGH_WATER + 1)
        assert not try_send(client, big)  # past the high-water mark: `send` may wait
        assert await read_exactly(server, 5) == b"small"
        await client.aclose()
        assert not try_send(client, b"late")  # closed: `send` raises


async def test_eof_from_the_peer_and_the_other_half_still_works() -> None:
    async with pair() as (client, server):
        await client.send(b"last words")
        await client.send_eof()
        assert await read_exactly(server, 10) == b"last words"
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
        await server.send(b"reply after eof")
        assert await read_exactly(client, 15) == b"reply after eof"


async def test_a_reset_peer_breaks_the_stream() -> None:
    async with pair() as (client, server):
        raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.aclose()  # linger 0: the kernel sends RST
        with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
            await server.receive()
        with pytest.raises(anyio.BrokenResourceError):
            for _ in range(100):  # the first sends may still be accepted by the kernel
                await server.send(b"x" * 65536)


async def test_closing_ends_a_pending_receive_and_later_calls() -> None:
    async with pair() as (_client, server), anyio.create_task_group() as tg:
        outcome: list[type[BaseException]] = []

        async def reader() -> None:
            try:
                await server.receive()
            except Exception as exc:
                outcome.append(type(exc))

        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        await server.aclose()
    assert outcome in ([anyio.ClosedResourceError], [anyio.BrokenResourceError])
    with pytest.raises(anyio.ClosedResourceError):
        await server.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await server.send(b"x")


async def test_two_readers_at_once_is_an_error() -> None:
    async with pair() as (client, server), anyio.create_task_group() as tg:
        tg.start_soon(server.receive)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await server.receive()
        await client.send(b"unblock")


async def test_a_cancelled_receive_leaves_the_stream_usable() -> None:
    async with pair() as (client, server):
        with anyio.move_on_after(0.01) as scope:
            await server.receive()
        assert scope.cancelled_caught
        await client.send(b"later")
        assert await read_exactly(server, 5) == b"later"


async def test_time_limit_ends_a_wait_with_timeout_error() -> None:
    async with pair() as (client, server):
        with anyio.move_on_after(5) as guard:  # a limit that never fires fails, not hangs
            with pytest.raises(TimeoutError), time_limit(server, 0.02):
                await server.receive()
        assert not guard.cancelled_caught
        # Outside the limit the stream waits as long as it takes, and works.
        await client.send(b"ok")
        assert await read_exactly(server, 2) == b"ok"


async def test_time_limit_does_not_fire_on_a_timely_answer_nor_after_the_block() -> None:
    async with pair() as (client, server):
        for _ in range(3):  # a limit per exchange, as the pool sets them
            with time_limit(server, 0.05):
                await client.send(b"ping")
                assert await read_exactly(server, 4) == b"ping"
        # The lazily armed timer of the first limit fires while nothing is limited.
        with anyio.move_on_after(0.1):
            await server.receive()
        await client.send(b"still fine")
        assert await read_exactly(server, 10) == b"still fine"


async def test_a_later_limit_outlives_the_timer_armed_for_an_earlier_one() -> None:
    async with pair() as (client, server):
        with time_limit(server, 0.02):
            await client.send(b"a")
            await read_exactly(server, 1)
        # The timer armed for 0.02 s is still pending; this limit is longer.
        with time_limit(server, 0.3), anyio.move_on_after(0.1) as scope:
            await server.receive()
        assert scope.cancelled_caught  # our 0.1 s came first: no early TimeoutError
        with anyio.move_on_after(5) as guard:
            with pytest.raises(TimeoutError), time_limit(server, 0.05):
                await server.receive()
        assert not guard.cancelled_caught


async def test_no_limit_is_no_limit() -> None:
    async with pair() as (_client, server):
        with time_limit(server, None), anyio.move_on_after(0.05) as scope:
            await server.receive()
        assert scope.cancelled_caught


async def test_a_reader_with_data_always_there_still_lets_others_run() -> None:
    async with pair() as (client, server):
        await client.send(b"x" * 4000)
        await anyio.wait_all_tasks_blocked()
        ticks = 0

        async def other() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            await read_exactly_small(server, 4000)
            tg.cancel_scope.cancel()
        assert ticks >= 4000 // 64  # it ran at least every few dozen reads


async def read_exactly_small(stream: anyio.abc.ByteStream, n: int) -> None:
    got = 0
    while got < n:
        got += len(await stream.receive(1))


async def test_a_burst_of_connections_is_accepted_and_each_served() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as multi:
        port = multi.extra(anyio.abc.SocketAttribute.local_port)
        listener = multi.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        clients = [await connect_tcp("127.0.0.1", port) for _ in range(20)]
        served: list[bytes] = []

        async def echo_once(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                data = await stream.receive()
                served.append(data)
                await stream.send(data.upper())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in clients:  # all 20 are queued already: no accept waits
                    tg.start_soon(serve_accepted, await accept(listener), echo_once)
                for i, client in enumerate(clients):
                    await client.send(b"hello %d" % i)
                replies = [
                    await read_exactly(c, len(b"hello %d" % i)) for i, c in enumerate(clients)
                ]
        for c in clients:
            await c.aclose()
    assert sorted(served) == sorted(b"hello %d" % i for i in range(20))
    assert replies == [b"HELLO %d" % i for i in range(20)]


async def test_a_cancelled_accept_leaves_no_reader_and_the_next_accept_works(
    anyio_backend_name: str,
) -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as multi:
        port = multi.extra(anyio.abc.SocketAttribute.local_port)
        listener = multi.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        raw = listener.extra(anyio.abc.SocketAttribute.raw_socket)
        async with anyio.create_task_group() as tg:
            tg.start_soon(accept, listener)  # nothing is queued: it waits for the loop
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        if anyio_backend_name == "asyncio":  # bpo-41317: the cancelled wait's reader is gone
            import asyncio

            assert not asyncio.get_running_loop().remove_reader(raw)  # uvloop answers None
        client = await connect_tcp("127.0.0.1", port)
        server = await (await accept(listener)).open()
        async with client, server:
            await client.send(b"ping")
            assert await read_exactly(server, 4) == b"ping"
