"""Idle-connection lockout against a real sidecar process: one client cannot fill a listener.

A provider sidecar (`python -m sofamesh.sidecar`) fronts an HTTP/1.1 app in the test. The
attacker opens idle connections from other loopback addresses (127.0.0.2 and up: the whole
of 127/8 is loopback on Linux), so the sidecar sees distinct sources; probes from
127.0.0.1 must keep being answered by the app, and the admin API's `/ready` too.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import pytest
from tests.e2e.attack_apps import app_server, counter, split

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.testing.plugin import SidecarFactory
from sofamesh.testing.process import SidecarProcess, poll_until

pytestmark = pytest.mark.anyio
SERVICE = "com.example.Crowded"
GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


async def ok(_req: HttpRequest, _conn: object) -> HttpResponse:
    return HttpResponse(200, [(b"content-type", b"text/plain")], b"ok")


@asynccontextmanager
async def app() -> AsyncIterator[int]:
    """The app behind the sidecar, in the test; yields its port."""
    async with app_server(ok, max_connections=1000) as port:
        yield port


async def provider(
    sofamesh_sidecar: SidecarFactory, app_port: int, limits: dict[str, Any]
) -> SidecarProcess:
    inbound = {"protocol": "http", "upstream": f"127.0.0.1:{app_port}", "services": [SERVICE],
               "limits": limits}  # fmt: skip
    return await sofamesh_sidecar("crowded", inbound=[inbound])


async def probe(address: str, path: str = "/", host: str = SERVICE, timeout: float = 15) -> bytes:
    """One request from 127.0.0.1 on a new connection; the status line ("" if refused)."""
    ip, port = split(address)
    request = f"GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode()
    with anyio.fail_after(timeout):
        try:
            async with await anyio.connect_tcp(ip, port, local_host="127.0.0.1") as sock:
                await sock.send(request)
                data = b""
                while b"\r\n" not in data:
                    data += await sock.receive()
        except GONE:
            return b""
    return data.split(b"\r\n", 1)[0]


async def flood(stack: AsyncExitStack, address: str, source: str, n: int) -> int:
    """Open `n` idle connections from `source`, held open by `stack`; how many opened."""
    ip, port = split(address)
    opened = 0
    for _ in range(n):
        try:
            sock = await anyio.connect_tcp(ip, port, local_host=source)
        except OSError:
            continue
        await stack.enter_async_context(sock)
        opened += 1
    return opened


async def test_one_source_cannot_lock_others_out(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """2,000 idle connections from 127.0.0.2 to a listener of 1,000 (a share of 100 each)
    and 1,000 to the admin API (of 1,000 too): 127.0.0.1's probes and /ready keep being
    answered."""
    async with app() as app_port, AsyncExitStack() as stack:
        sidecar = await provider(sofamesh_sidecar, app_port, {"max_connections": 1000})
        inbound = sidecar.inbound_address()
        opened = await flood(stack, inbound, "127.0.0.2", 2000)
        opened += await flood(stack, sidecar.admin_address, "127.0.0.2", 1000)
        seen = [0]

        async def refused() -> bool:
            # Past its share (100 on each listener), each of the source's connections is
            # refused or takes the place of one of its own idle ones, give or take the
            # shares freed each time idle connections reach the 10 s header timeout.
            seen[0] = await counter(sidecar, "connections_refused_per_source")
            seen[0] += await counter(sidecar, "connections_evicted_idle")
            return seen[0] >= opened * 2 // 3

        try:
            await poll_until(refused, 90)
        except TimeoutError:
            raise AssertionError(f"{seen[0]} of {opened} refused or replaced") from None
        for _ in range(15):
            assert await probe(inbound) == b"HTTP/1.1 200 OK"
            assert await probe(sidecar.admin_address, "/ready", "admin") == b"HTTP/1.1 200 OK"
        assert "127.0.0.2 is at its share of connections" in sidecar.log()


async def test_idle_connections_make_room(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """Twelve sources fill their shares of a listener of 100; the idle ones are closed,
    the longest idle first, and a new client is served."""
    async with app() as app_port, AsyncExitStack() as stack:
        sidecar = await provider(sofamesh_sidecar, app_port, {"max_connections": 100})
        inbound = sidecar.inbound_address()
        for i in range(2, 14):
            await flood(stack, inbound, f"127.0.0.{i}", 10)

        async def evicted() -> bool:
            return await counter(sidecar, "connections_evicted_idle") > 0

        await poll_until(evicted, 60)
        for _ in range(15):
            assert await probe(inbound) == b"HTTP/1.1 200 OK"
        assert "idle ones (the longest idle from 127.0.0.2" in sidecar.log()


def open_idle(address: str, n: int) -> list[socket.socket]:
    """`n` connections from 127.0.0.1, opened as fast as a blocking loop can (in a thread:
    an attacker does not wait for the event loop), left idle."""
    ip, port = split(address)
    socks = []
    for _ in range(n):
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection((ip, port), timeout=5))
    return socks


async def test_an_idle_flood_from_the_clients_own_address_leaves_them_served(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """5,000 idle connections (2,000 on trio) from 127.0.0.1 as fast as they open (a share
    of 1,000 on a listener of the default 10,000); then every one of 15 fresh clients from
    127.0.0.1 is answered within 10 s (a loaded CI machine's margin: unloaded, the first
    takes about a second): the flood's own never-used connections make room, and the
    sidecar works through the flood's queue of connections before the clients give up
    (before, at 0.5 ms per connection of the flood, it did not within 10 s)."""
    async with app() as app_port:
        sidecar = await provider(sofamesh_sidecar, app_port, {})
        inbound = sidecar.inbound_address()
        # trio's sidecar accepts through anyio's listener, a loop round per connection
        n = 5000 if anyio_backend == "asyncio" else 2000
        socks = await anyio.to_thread.run_sync(open_idle, inbound, n)
        try:
            assert len(socks) > n * 4 // 5
            answers = [await probe(inbound, timeout=10) for _ in range(15)]
        finally:
            for sock in socks:
                sock.close()
        assert answers == [b"HTTP/1.1 200 OK"] * 15
        assert await counter(sidecar, "connections_evicted_idle") > n // 2
        assert "127.0.0.1 is at its share of connections" in sidecar.log()
