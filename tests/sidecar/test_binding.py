"""Listeners bound on IP literals by the sidecar itself, and on hostnames by anyio."""

from __future__ import annotations

import socket

import anyio
import pytest

from sofamesh.config import Address
from sofamesh.sidecar.binding import bind_listener
from sofamesh.sidecar.errors import SidecarError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
async def test_a_listener_accepts_on_its_address(host: str) -> None:
    listener = await bind_listener("outbound[0]", Address(host, 0))
    async with listener:
        raw = [child.extra(anyio.abc.SocketAttribute.raw_socket) for child in listener.listeners]
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) for s in raw)
        v6 = [s for s in raw if s.family == socket.AF_INET6]
        assert all(s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) for s in v6)
        sockname = raw[0].getsockname()
        async with anyio.create_task_group() as tg:

            async def accept_one() -> None:
                async with await listener.listeners[0].accept() as conn:
                    await conn.send(b"hi")

            tg.start_soon(accept_one)
            async with await anyio.connect_tcp(sockname[0], sockname[1]) as client:
                assert await client.receive() == b"hi"


async def test_a_taken_port_names_the_listener() -> None:
    first = await bind_listener("outbound[0]", Address("127.0.0.1", 0))
    async with first:
        port = first.extra(anyio.abc.SocketAttribute.local_port)
        with pytest.raises(SidecarError, match=r"outbound\[1\]: cannot listen on 127.0.0.1:"):
            await bind_listener("outbound[1]", Address("127.0.0.1", port))
