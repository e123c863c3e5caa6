"""Memory attacks against a real sidecar process: slow readers, zero windows, stalled frames.

Each sidecar is a `python -m sofamesh.sidecar` process in front of an app in the test.
The defences: a process-wide buffer budget past which new requests are shed (HTTP 503
with `x-sofamesh-overload`, Bolt SERVER_THREADPOOL_BUSY), a send timeout on HTTP/2 streams
whose client opens no window, and a time limit on Bolt frames that stop half way.
"""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
from tests.e2e.attack_apps import (
    MIB,
    SERVICE,
    app_server,
    big_or_ok,
    counter,
    provider,
    rss_mib,
    split,
)
from tests.protocols.bolt.bolt_support import RawPeer, bolt_server

from sofamesh.codecs.bolt import (
    RequestFrame,
    ResponseFrame,
    ResponseStatus,
    encode,
    heartbeat,
    request,
)
from sofamesh.codecs.h2 import CANCEL, ENHANCE_YOUR_CALM
from sofamesh.testing.plugin import SidecarFactory
from sofamesh.testing.process import poll_until
from sofamesh.transport.budget import OVERLOAD

pytestmark = pytest.mark.anyio
GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


async def slow_reader(stack: AsyncExitStack, address: str, path: str = "/big") -> bytes:
    """Ask for `path`, read the first bytes of the answer, then stop reading: its status line."""
    ip, port = split(address)
    sock = await stack.enter_async_context(await anyio.connect_tcp(ip, port))
    await sock.send(f"GET {path} HTTP/1.1\r\nhost: {SERVICE}\r\n\r\n".encode())
    with anyio.fail_after(10):
        first = await sock.receive(4096)
    return first.split(b"\r\n", 1)[0]


async def test_slow_readers_are_bounded_by_the_buffer_budget(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """30 slow readers of a 10 MiB response, with a 40 MiB budget: the first few hold
    their responses, the rest are shed with 503, RSS stays within 120 MiB of where it
    started (it grew by 20 MiB per reader before), /ready keeps answering, and once the
    readers are gone a well-behaved client is served again."""
    async with app_server(big_or_ok) as port:
        # Buffered answers (no streaming: test_attack_streaming.py has those) fill the budget,
        # and stay: the overload action that resets the biggest (test_attack_memory.py) is off.
        limits = {"stream_threshold_bytes": 0}
        overload = {"reset_above": 100.0}
        sidecar = await provider(
            sofamesh_sidecar, "http", port, buffer_budget=40 * MIB, limits=limits, overload=overload
        )
        address = sidecar.inbound_address()
        url = f"http://{address}/"
        async with httpx.AsyncClient(headers={"host": SERVICE}, timeout=10) as client:
            assert (await client.get(url)).status_code == 200
            before = rss_mib(sidecar.pid)
            async with AsyncExitStack() as stack:
                statuses = [await slow_reader(stack, address) for _ in range(30)]
                during = rss_mib(sidecar.pid)
                shed = await client.get(url)
                ready = await sidecar.admin("GET", "/ready")  # the admin API is never shed
            assert shed.status_code == 503 and shed.headers["x-sofamesh-overload"] == "buffers"
            assert ready.status_code == 200

            async def served() -> bool:
                return (await client.get(url)).status_code == 200

            await poll_until(served, 10)
    held = statuses.count(b"HTTP/1.1 200 OK")
    assert 1 <= held <= 6 and statuses.count(b"HTTP/1.1 503 Service Unavailable") == 30 - held
    assert during - before < 120, (before, during)
    assert await counter(sidecar, "requests_shed_overload") >= 30 - held + 1
    assert "over the buffer budget" in sidecar.log()


async def zero_window_streams(address: str, streams: int) -> list[h2.events.Event]:
    """Open `streams` GETs of the big response with a stream window of 0, never opening it;
    every event until the sidecar closes the connection."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    head = [(":method", "GET"), (":scheme", "http"), (":path", "/big"), (":authority", SERVICE)]
    for _ in range(streams):
        conn.send_headers(conn.get_next_available_stream_id(), head, end_stream=True)
    events: list[h2.events.Event] = []
    ip, port = split(address)
    async with await anyio.connect_tcp(ip, port) as sock:
        await sock.send(conn.data_to_send())
        with anyio.fail_after(15):
            try:
                while True:
                    events += conn.receive_data(await sock.receive())
                    await sock.send(conn.data_to_send())  # ACKs only, never a WINDOW_UPDATE
            except GONE:
                pass
    return events


async def test_a_zero_window_client_is_reset_after_the_send_timeout(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """Five streams of a 10 MiB response to a client that opens no window: each is reset
    after the 1 s send timeout, the connection is closed for making no progress, and
    another client is served meanwhile."""
    async with app_server(big_or_ok, h2c=True) as port:
        sidecar = await provider(sofamesh_sidecar, "h2", port, limits={"send_timeout": 1})
        address = sidecar.inbound_address()
        async with anyio.create_task_group() as tg:
            result: list[list[h2.events.Event]] = []

            async def attack() -> None:
                result.append(await zero_window_streams(address, 5))

            tg.start_soon(attack)
            async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
                for _ in range(5):
                    r = await client.get(f"http://{address}/", headers={"host": SERVICE})
                    assert r.status_code == 200
    events = result[0]
    # h2 stops reporting a connection's frames at its GOAWAY, so the resets after it are
    # counted by the sidecar.
    resets = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert resets and all(e.error_code == CANCEL for e in resets)
    ended = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended and ended[0].error_code == ENHANCE_YOUR_CALM
    assert not any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert await counter(sidecar, "h2_send_timeouts") == 5
    assert "opened no window on stream" in sidecar.log()


async def test_stalled_bolt_frames_are_closed_and_shed_while_held(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """20 connections each send the first 256 KiB of a 4 MiB Bolt frame and stall. While
    their 5 MiB sit in the buffers (a 4 MiB budget), a request is answered busy; after
    the 1 s frame timeout every one is closed, and the next request is not shed."""
    frame = encode(request(1, b"x" * (4 * MIB), headers={"service": f"{SERVICE}:1.0"}))
    # The frames stay until the frame limit: the overload action that would reset the biggest
    # (test_attack_memory.py) is off.
    config = {"buffer_budget": 4 * MIB, "limits": {"frame_timeout": 1},
              "overload": {"reset_above": 100.0}}  # fmt: skip
    sidecar = await provider(sofamesh_sidecar, "bolt", 1, **config)
    ip, port = split(sidecar.inbound_address())
    async with AsyncExitStack() as stack:
        stalled = []
        for _ in range(20):
            sock = await stack.enter_async_context(await anyio.connect_tcp(ip, port))
            await sock.send(frame[: 256 * 1024])
            stalled.append(RawPeer(sock))
        async with await anyio.connect_tcp(ip, port) as sock:
            other = RawPeer(sock)

            async def busy() -> bool:
                await other.send(request(2, b"", headers={"service": f"{SERVICE}:1.0"}))
                reply = await other.next_frame()
                assert isinstance(reply, ResponseFrame)
                return reply.status == ResponseStatus.SERVER_THREADPOOL_BUSY

            await poll_until(busy, 5)
            for peer in stalled:
                assert await peer.closed()
            await other.send(heartbeat(3))  # the well-behaved connection is still served
            assert isinstance(await other.next_frame(), ResponseFrame)
            assert not await busy()
    assert await counter(sidecar, "bolt_frame_timeouts") == 20
    assert "of a frame and not the rest within 1s" in sidecar.log()


async def test_a_bolt_client_that_reads_no_replies_is_cut_off(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """Heartbeats from a client that never reads their acknowledgements: once 64 KiB of
    replies are queued for it, the sidecar closes the connection."""
    config = {"limits": {"max_write_buffer_bytes": 64 * 1024}}
    sidecar = await provider(sofamesh_sidecar, "bolt", 1, **config)
    ip, port = split(sidecar.inbound_address())
    batch = b"".join(encode(heartbeat(i)) for i in range(1000))
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    raw.connect((ip, port))
    raw.setblocking(False)
    async with await anyio.abc.SocketStream.from_socket(raw) as sock:
        with anyio.move_on_after(10):  # the send blocks once the sidecar stops reading
            for _ in range(300):  # at most 300,000 heartbeats: cut off long before
                try:
                    await sock.send(batch)
                except GONE:
                    break

        async def counted() -> bool:
            return await counter(sidecar, "bolt_write_buffer_overflows") == 1

        await poll_until(counted, 10)
        with anyio.fail_after(10), pytest.raises(GONE):  # and the connection has ended
            while True:
                await sock.receive()
    assert "does not read its replies" in sidecar.log()


async def test_a_half_sent_upload_counts_in_the_budget(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """5 MiB of an 8 MiB request body, then nothing: with a 4 MiB budget, other requests
    are shed while it is held, and served again once the uploader has gone."""
    async with app_server(big_or_ok) as port:
        # A buffered upload (a streamed one holds a piece: test_attack_streaming.py).
        limits = {"stream_threshold_bytes": 0}
        sidecar = await provider(
            sofamesh_sidecar, "http", port, buffer_budget=4 * MIB, limits=limits
        )
        address = sidecar.inbound_address()
        url = f"http://{address}/"
        async with httpx.AsyncClient(headers={"host": SERVICE}, timeout=10) as client:
            ip, tcp_port = split(address)
            async with await anyio.connect_tcp(ip, tcp_port) as upload:
                head = f"POST / HTTP/1.1\r\nhost: {SERVICE}\r\ncontent-length: {8 * MIB}\r\n\r\n"
                await upload.send(head.encode() + b"x" * (5 * MIB))

                async def shed() -> bool:
                    return (await client.get(url)).status_code == 503

                await poll_until(shed, 10)

            async def served() -> bool:
                return (await client.get(url)).status_code == 200

            await poll_until(served, 10)


async def test_the_budget_gets_back_what_a_dropped_connection_held(anyio_backend: Any) -> None:
    """In process: a Bolt client that queued replies it never read, and half a frame, then
    vanished; once its connection is gone, the budget holds what it held before."""
    before = OVERLOAD.held
    frame = encode(request(1, b"x" * MIB, headers={"service": f"{SERVICE}:1.0"}))

    async def never(_frame: RequestFrame, _info: object) -> None:
        raise AssertionError("no request is whole")

    async with bolt_server(never) as (server, port):
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", port))
        raw.setblocking(False)
        async with await anyio.abc.SocketStream.from_socket(raw) as sock:
            batch = b"".join(encode(heartbeat(i)) for i in range(1000))
            with anyio.move_on_after(2):
                for _ in range(50):
                    await sock.send(batch)
            await sock.send(frame[: 64 * 1024])

            async def holding() -> bool:
                return OVERLOAD.held > before

            await poll_until(holding, 5)

        async def gone() -> bool:
            return server.statistics().active_connections == 0

        await poll_until(gone, 10)
    assert OVERLOAD.held == before
