"""Memory an attacker pins, against a real sidecar process: bounded while held, given back after.

The defences: a frame begun that stops growing is dropped with its connection
(`limits.frame_progress_timeout`, Bolt and Dubbo), and the heap is trimmed once a large
burst of buffers has been freed, so the process's RSS returns close to where it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
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
    BIG_SUM,
    MIB,
    SERVICE,
    app_server,
    big_or_ok,
    counter,
    provider,
    rss_mib,
    split,
)
from tests.protocols.bolt.bolt_support import RawPeer
from tests.protocols.dubbo import dubbo_support

from sofamesh.codecs import dubbo
from sofamesh.codecs.bolt import ResponseFrame, encode, heartbeat, request
from sofamesh.protocols.dubbo.server import DubboServer
from sofamesh.testing.plugin import SidecarFactory
from sofamesh.testing.process import poll_until
from sofamesh.transport.budget import OVERLOAD

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def h2c_app(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    """The app behind the sidecar, over h2c, in the test process; yields its port."""
    # The app holds every answer the sidecar reads slowly: past this process's own budget.
    monkeypatch.setattr(OVERLOAD, "limit", 1 << 40)
    async with app_server(big_or_ok, h2c=True) as port:
        yield port


async def zero_window(
    address: str, streams: int, started: anyio.Event, leave: anyio.Event, heads: bool = True
) -> int:
    """Open `streams` GETs of the big response with a stream window of 0, never opening it;
    `started` once every response head came (or, `heads` false, once the first frames from
    the sidecar came), then hold until `leave`. The DATA bytes seen."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    head = [(":method", "GET"), (":scheme", "http"), (":path", "/big"), (":authority", SERVICE)]
    for _ in range(streams):
        conn.send_headers(conn.get_next_available_stream_id(), head, end_stream=True)
    seen = data = 0
    ip, port = split(address)
    async with await anyio.connect_tcp(ip, port) as sock:
        await sock.send(conn.data_to_send())
        with anyio.move_on_after(30):  # a bound: `leave` comes long before
            while seen < (streams if heads else 1):
                for event in conn.receive_data(await sock.receive()):
                    seen += isinstance(event, h2.events.ResponseReceived) or not heads
                    data += len(getattr(event, "data", b"") or b"")
                await sock.send(conn.data_to_send())  # ACKs only, never a WINDOW_UPDATE
        started.set()
        await leave.wait()
    return data


async def test_stalled_bolt_frames_go_within_the_progress_timeout(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """16 connections each send a 6 MiB Bolt frame but its last byte, and hold it. With a
    1 s progress limit (and the default 30 s whole-frame limit) every one is closed within
    a few seconds, the sidecar never holds much more than the frames themselves, heartbeats
    on another connection are answered throughout, and RSS comes back close to where it was."""
    frame = encode(request(1, b"x" * (6 * MIB), headers={"service": f"{SERVICE}:1.0"}))[:-1]
    sidecar = await provider(sofamesh_sidecar, "bolt", 1, limits={"frame_progress_timeout": 1})
    ip, port = split(sidecar.inbound_address())
    async with await anyio.connect_tcp(ip, port) as sock:
        other = RawPeer(sock)
        await other.send(heartbeat(1))
        assert isinstance(await other.next_frame(), ResponseFrame)
        before = rss_mib(sidecar.pid)
        async with AsyncExitStack() as stack:
            stalled = []
            for _ in range(16):
                peer = await stack.enter_async_context(await anyio.connect_tcp(ip, port))
                await peer.send(frame)
                stalled.append(RawPeer(peer))
            with anyio.fail_after(6):  # 1 s without growth, checked every quarter second
                for peer in stalled:
                    assert await peer.closed()
        peak = rss_mib(sidecar.pid)
        await other.send(heartbeat(2))  # the well-behaved connection is still served
        assert isinstance(await other.next_frame(), ResponseFrame)

        async def given_back() -> bool:
            return rss_mib(sidecar.pid) - before < 16

        # Given back by the heap trim after the release, or (on trio, where the frames wait
        # for the cycle collector) by the collection before it.
        await poll_until(given_back, 10)
    assert await counter(sidecar, "bolt_frame_stalls") == 16
    assert await counter(sidecar, "bolt_frame_timeouts") == 0
    assert "of a frame, then nothing for 1s; closing" in sidecar.log()
    assert peak - before < 16 * 6 * 2, (before, peak)  # at most twice the frames' bytes


async def test_a_stalled_dubbo_frame_is_dropped(anyio_backend: Any) -> None:
    """In process: a Dubbo frame that stops 1 byte short is dropped after the progress
    limit, its bytes leave the buffer budget, and another connection is served."""
    before = OVERLOAD.held
    frame = dubbo_support.request(1, "echo", "Ljava/lang/String;", "x" * MIB)[:-1]

    async def echo(req: dubbo.RequestFrame, _info: object) -> dubbo.ResponseFrame:
        return dubbo.reply(req, dubbo.Status.OK, dubbo.encode_response("ok"))

    server = DubboServer(echo, frame_progress_timeout=0.5)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        async with dubbo_support.raw_client(port) as stalled, dubbo_support.raw_client(port) as ok:
            await stalled.send(frame)
            assert await stalled.next_frame() is None  # closed: 0.5 s without growth
            assert OVERLOAD.held == before
            await ok.send(dubbo.heartbeat(2))
            assert isinstance(await ok.next_frame(), dubbo.ResponseFrame)
        await server.drain()
    assert OVERLOAD.counters.get("dubbo_frame_stalls", 0) >= 1


async def test_a_zero_window_client_holds_little_and_gives_it_back(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 streams of a 10 MiB response to a client whose stream window is 0, with the
    default 60 s send timeout: buffered whole they held 400 MiB; streamed, each holds at
    most the upstream stream's window, so the sidecar grows by under 60 MiB. Another client
    meanwhile gets the whole 10 MiB (checksum), and once the attacker has gone the RSS
    comes back within 20 MiB of where it was."""
    async with h2c_app(monkeypatch) as port:
        sidecar = await provider(sofamesh_sidecar, "h2", port)
        address = sidecar.inbound_address()
        url = f"http://{address}/big"
        async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
            whole = await client.get(url, headers={"host": SERVICE})
            assert hashlib.sha256(whole.content).hexdigest() == BIG_SUM
            before = rss_mib(sidecar.pid)
            started, leave = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as tg:
                seen: list[int] = []

                async def attack() -> None:
                    seen.append(await zero_window(address, 40, started, leave))

                tg.start_soon(attack)
                await started.wait()
                for _ in range(3):  # a well-behaved client is served in full meanwhile
                    r = await client.get(url, headers={"host": SERVICE})
                    assert hashlib.sha256(r.content).hexdigest() == BIG_SUM
                during = rss_mib(sidecar.pid)
                leave.set()
            assert seen == [0]  # no window, no DATA: the streams were held, not answered

            async def given_back() -> bool:
                return rss_mib(sidecar.pid) - before < 20

            await poll_until(given_back, 10)
    assert during - before < 60, (before, during)


async def test_past_the_budget_the_biggest_holders_are_reset(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buffered responses (`stream_threshold_bytes: 0`) of 10 MiB on 8 streams of a client
    that opens no window, with a 32 MiB budget and the default 60 s send timeout: the
    streams fill the budget and every other request is shed. Past the budget the overload
    action resets the biggest streams until what is held is under 80 % of it, so another
    client is served again within seconds while the attacker is still connected; the
    resets are counted and logged with the peer, and RSS comes back once it has gone."""
    async with h2c_app(monkeypatch) as port:
        limits = {"stream_threshold_bytes": 0}
        overload = {"trim_after_bytes": 8 * MIB}  # the 30 MiB held at the end, given back
        sidecar = await provider(
            sofamesh_sidecar, "h2", port, buffer_budget=32 * MIB, limits=limits, overload=overload
        )
        address = sidecar.inbound_address()
        url = f"http://{address}/"
        async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
            assert (await client.get(url, headers={"host": SERVICE})).status_code == 200
            before = rss_mib(sidecar.pid)
            started, leave = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(zero_window, address, 8, started, leave, False)
                await started.wait()

                async def reset() -> bool:
                    return await counter(sidecar, "overload_resets") >= 1

                await poll_until(reset, 30)  # the app in this process sends 80 MiB first

                async def served() -> bool:
                    try:
                        r = await client.get(url, headers={"host": SERVICE})
                    except httpx.RemoteProtocolError:  # REFUSED_STREAM: shed
                        return False
                    return r.status_code == 200

                await poll_until(served, 10)
                leave.set()

            async def given_back() -> bool:
                return rss_mib(sidecar.pid) - before < 20

            await poll_until(given_back, 15)
    assert "resetting h2 127.0.0.1:" in sidecar.log()
