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
import pytest
from tests.e2e.test_attack_buffers import SERVICE, counter, provider, rss_mib, split
from tests.protocols.bolt.bolt_support import RawPeer
from tests.protocols.dubbo import dubbo_support

from sofamesh.codecs import dubbo
from sofamesh.codecs.bolt import ResponseFrame, encode, heartbeat, request
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.protocols.dubbo.server import DubboServer
from sofamesh.protocols.h2.http import H2HttpHandler
from sofamesh.protocols.h2.server import H2Server
from sofamesh.testing.plugin import SidecarFactory
from sofamesh.transport.budget import OVERLOAD

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024
BIG = 10 * MIB
# Not one repeated byte: a piece out of place or lost changes the checksum.
PATTERN = hashlib.sha256(b"sofamesh").digest() * 7  # 224 bytes
BIG_BODY = (PATTERN * (BIG // len(PATTERN) + 1))[:BIG]
BIG_SUM = hashlib.sha256(BIG_BODY).hexdigest()


async def big_app(req: HttpRequest) -> HttpResponse:
    body = BIG_BODY if req.target == "/big" else b"ok"  # one 10 MiB object, shared
    return HttpResponse(200, [(b"content-type", b"application/octet-stream")], body)


@asynccontextmanager
async def h2c_app(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    """The app behind the sidecar, over h2c, in the test process; yields its port."""
    # The app holds every answer the sidecar reads slowly: past this process's own budget.
    monkeypatch.setattr(OVERLOAD, "limit", 1 << 40)
    server = H2Server(H2HttpHandler(big_app, max_body=MIB))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def zero_window(address: str, streams: int, started: anyio.Event, leave: anyio.Event) -> int:
    """Open `streams` GETs of the big response with a stream window of 0, never opening it;
    `started` once every response head came, then hold until `leave`. The DATA bytes seen."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    head = [(":method", "GET"), (":scheme", "http"), (":path", "/big"), (":authority", SERVICE)]
    for _ in range(streams):
        conn.send_headers(conn.get_next_available_stream_id(), head, end_stream=True)
    heads = data = 0
    ip, port = split(address)
    async with await anyio.connect_tcp(ip, port) as sock:
        await sock.send(conn.data_to_send())
        with anyio.move_on_after(30):  # a bound: `leave` comes long before
            while heads < streams:
                for event in conn.receive_data(await sock.receive()):
                    heads += isinstance(event, h2.events.ResponseReceived)
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
