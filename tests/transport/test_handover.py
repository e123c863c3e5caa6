"""Passing listening sockets between processes: the messages, the fds, the listeners.

The sockets travel over a real Unix socket here, within one process; the sidecar's
tests (tests/e2e/test_upgrade.py) pass them between processes.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import Address
from sofamesh.protocols.http.server import ConnInfo, Http1Server
from sofamesh.sidecar.upgrade import ListenerSockets, adopt
from sofamesh.transport.handover import (
    MAX_MESSAGE,
    Channel,
    HandoverError,
    MessageError,
    frame,
    listener_from_sockets,
    listening_sockets,
    peer_uid,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def channels(tmp_path: Path) -> AsyncIterator[tuple[Channel, Channel]]:
    """Both ends of one Unix-socket connection."""
    async with await anyio.create_unix_listener(tmp_path / "s.sock") as listener:
        client = await anyio.connect_unix(tmp_path / "s.sock")
        server = await listener.accept()
        try:
            yield Channel(client), Channel(server)  # type: ignore[arg-type]
        finally:
            await client.aclose()
            await server.aclose()


def tcp_listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def test_messages_carry_listening_sockets(tmp_path: Path) -> None:
    a, b = tcp_listener(), tcp_listener()
    async with channels(tmp_path) as (new, old):
        await old.send({"listeners": ["a", "b"]}, [a.fileno(), b.fileno()])
        await old.send({"going": 1})
        offer, sockets = await new.receive()
        assert offer == {"listeners": ["a", "b"], "fds": 2}
        assert [s.getsockname() for s in sockets] == [a.getsockname(), b.getsockname()]
        assert await new.receive() == ({"going": 1, "fds": 0}, [])
        assert peer_uid(new.stream) == os.getuid()
    for s in (a, b, *sockets):
        s.close()


async def test_a_broken_message_is_an_error(tmp_path: Path) -> None:
    async with channels(tmp_path) as (new, old):
        await old.stream.send(struct.pack(">I", 5) + b"[1,2]")
        with pytest.raises(HandoverError, match="must be a JSON object"):
            await new.receive()
        await old.stream.send(struct.pack(">I", 1 << 30))
        with pytest.raises(HandoverError, match="over"):
            await new.receive()
        await old.aclose()
        with pytest.raises(HandoverError, match="closed the connection"):
            await new.receive()


async def test_a_message_over_the_senders_cap_is_refused_and_the_channel_stays_usable(
    tmp_path: Path,
) -> None:
    async with channels(tmp_path) as (new, old):
        big = {"rules": "x" * MAX_MESSAGE}
        with pytest.raises(MessageError, match="over the cap"):
            await old.send(big)
        with pytest.raises(MessageError, match="not a JSON message"):
            await old.send({"when": object()})
        await old.send({"after": 1})
        assert await new.receive() == ({"after": 1, "fds": 0}, [])
        # A channel with a larger cap each way carries it; one frame goes to any of them.
        new.max_message = old.max_message = 2 * MAX_MESSAGE
        data = frame(big, old.max_message)
        async with anyio.create_task_group() as tg:  # more than the socket buffers hold
            tg.start_soon(old.send_frame, data)
            assert (await new.receive())[0] == {**big, "fds": 0}
        await old.stream.send(data[:4])
        new.max_message = MAX_MESSAGE  # what arrives over the receiver's own cap is an error
        with pytest.raises(HandoverError, match="over"):
            await new.receive()


async def test_an_inherited_socket_serves_connections_queued_before_it_moved() -> None:
    async def ok(_req: HttpRequest, _info: ConnInfo) -> HttpResponse:
        return HttpResponse(200, [], b"moved")

    original = tcp_listener()
    port = original.getsockname()[1]
    # A client connects while nobody accepts: the kernel queues it on the socket.
    queued = await anyio.connect_tcp("127.0.0.1", port)
    inherited = socket.socket(fileno=os.dup(original.fileno()))
    original.close()  # the old process's copy goes; the socket keeps listening
    listener = await listener_from_sockets([inherited])
    assert [s.getsockname() for s in listening_sockets(listener)] == [("127.0.0.1", port)]
    server = Http1Server(ok)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        await queued.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        assert (await queued.receive()).endswith(b"moved")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "moved"
        await queued.aclose()
        await server.drain()
    tg.cancel_scope.cancel()


async def test_only_tcp_listening_sockets_are_taken() -> None:
    a, b = socket.socketpair()
    with pytest.raises(HandoverError, match="not a TCP listening socket"):
        await listener_from_sockets([a])
    a.close()
    b.close()


def test_listeners_are_matched_by_name_and_address() -> None:
    sockets = [tcp_listener() for _ in range(3)]
    offer = [
        {"name": "inbound[0]", "addresses": ["127.0.0.1:0", "127.0.0.1:4001"], "count": 1},
        {"name": "inbound[1]", "addresses": ["127.0.0.1:4002", "127.0.0.1:4002"], "count": 1},
        {"name": "admin", "addresses": ["127.0.0.1:0", "127.0.0.1:4003"], "count": 1},
    ]
    adopted = adopt(offer, sockets)
    assert adopted._claim("inbound[0]", "127.0.0.1:4001") == [sockets[0]]  # bound address
    assert adopted._claim("outbound[0]", "127.0.0.1:4002") == [sockets[1]]  # renamed
    assert adopted._claim("inbound[5]", "127.0.0.1:0") is None  # port 0: by name only
    assert adopted._claim("admin", "127.0.0.1:9") is None  # moved: bound afresh
    adopted.close_unclaimed()
    assert sockets[2].fileno() == -1 and not adopted.inherited
    for s in sockets[:2]:
        s.close()
    with pytest.raises(HandoverError, match="more descriptors"):
        adopt(offer[:1], [tcp_listener(), tcp_listener()])


async def test_a_sidecar_offers_what_it_serves() -> None:
    own = ListenerSockets()

    async def bind(_name: str, address: Address) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        return await anyio.create_tcp_listener(local_host=address.host, local_port=address.port)

    listener = await own.open("inbound[0]", Address("127.0.0.1", 0), bind)  # type: ignore[arg-type]
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    listeners, fds = own.offer()
    assert listeners == [
        {"name": "inbound[0]", "addresses": ["127.0.0.1:0", f"127.0.0.1:{port}"], "count": 1}
    ]
    assert len(fds) == 1
    await listener.aclose()
