"""HTTP/2 attacks against a real sidecar listener, with the `h2` library as the attacker.

A provider sidecar's inbound `h2` listener fronts an h2c app that counts the requests it
gets. Each attack is bounded (a few thousand streams or frames); the defence must fire
(GOAWAY ENHANCE_YOUR_CALM, or the connection closed for a peer that does not read), the
app must see at most a handful of the attacker's requests, and a well-behaved client
must be served meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httpx
import pytest
from hyperframe.frame import PingFrame, SettingsFrame, WindowUpdateFrame

from sofamesh.codecs.h2 import ENHANCE_YOUR_CALM, PREFACE
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.config import load_config
from sofamesh.protocols.h2.http import H2HttpHandler
from sofamesh.protocols.h2.server import H2Server
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio
SERVICE = "com.example.Attacked"
REQUEST = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", SERVICE)]
GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class App:
    def __init__(self) -> None:
        self.requests = 0
        self.started = anyio.Event()
        self.cancelled = anyio.Event()

    async def __call__(self, req: HttpRequest) -> HttpResponse:
        self.requests += 1
        if req.target == "/slow":
            self.started.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.cancelled.set()
        return HttpResponse(200, [(b"content-type", b"text/plain")], b"ok")


@asynccontextmanager
async def provider(app: App) -> AsyncIterator[int]:
    """A provider sidecar's inbound h2 listener in front of `app`; yields its port."""
    server = H2Server(H2HttpHandler(app, max_body=1 << 20))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    app_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    inbound = {"protocol": "h2", "listen": "127.0.0.1:0",
               "upstream": f"127.0.0.1:{app_port}", "services": [SERVICE]}  # fmt: skip
    prov = Sidecar(load_config({"app": "p", "registry": "memory://", "inbound": [inbound]}, env={}))
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        await tg.start(prov.run)
        yield prov.bound["inbound[0]"].port
        prov.stop()
        await prov.wait_stopped()
        tg.cancel_scope.cancel()


async def served(port: int) -> int:
    """A well-behaved h2c client's request: its status."""
    with anyio.fail_after(10):
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            r = await client.get(f"http://127.0.0.1:{port}/", headers={"host": SERVICE})
    return r.status_code


async def rapid_reset(port: int, streams: int) -> h2.events.ConnectionTerminated | None:
    """Open and reset `streams` streams, 100 a write, each write followed by a PING whose
    ACK says the server read it: the attacker never writes past the server's GOAWAY, so
    the GOAWAY is not lost to a reset of the unread bytes."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    ended: list[h2.events.ConnectionTerminated] = []
    read_all = anyio.Event()
    acked = [anyio.Event()]
    async with await anyio.connect_tcp("127.0.0.1", port) as sock:

        async def read() -> None:
            try:
                while not ended:
                    for ev in conn.receive_data(await sock.receive()):
                        if isinstance(ev, h2.events.ConnectionTerminated):
                            ended.append(ev)
                        elif isinstance(ev, h2.events.PingAckReceived):
                            acked[0].set()
            except (*GONE, h2.exceptions.ProtocolError):
                pass
            finally:
                read_all.set()
                acked[0].set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            for batch in range(streams // 100):
                if read_all.is_set():
                    break
                for _ in range(100):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, REQUEST, end_stream=True)
                    conn.reset_stream(sid)
                conn.ping(batch.to_bytes(8, "big"))
                acked[0] = anyio.Event()
                try:
                    await sock.send(conn.data_to_send())
                except GONE:
                    break
                with anyio.fail_after(10):
                    await acked[0].wait()
            with anyio.fail_after(10):
                await read_all.wait()  # the GOAWAY, or the end of the connection
    return ended[0] if ended else None


async def flood(port: int, frame: bytes, frames: int) -> int:
    """Send `frames` copies of `frame`, 1,000 a write, never reading; how many went before
    the server closed the connection."""
    sent = 0
    with anyio.fail_after(20):
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            try:
                await sock.send(PREFACE + SettingsFrame(0).serialize())
                while sent < frames:
                    await sock.send(frame * 1000)
                    sent += 1000
            except GONE:
                pass
    return sent


async def test_rapid_reset_gets_goaway_and_reaches_the_app_a_handful_of_times() -> None:
    app = App()
    async with provider(app) as port:
        assert await served(port) == 200
        before = app.requests
        goaway = await rapid_reset(port, 20_000)
        assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
        assert goaway.last_stream_id <= 2 * 300  # within Envoy's threshold (250 of 500)
        assert app.requests - before <= 5
        assert await served(port) == 200  # everyone else is still served


async def test_a_reset_cancels_the_upstream_call_under_way() -> None:
    app = App()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    slow = [(k, "/slow" if k == ":path" else v) for k, v in REQUEST]
    async with provider(app) as port, await anyio.connect_tcp("127.0.0.1", port) as sock:
        conn.send_headers(1, slow, end_stream=True)
        await sock.send(conn.data_to_send())
        with anyio.fail_after(10):
            await app.started.wait()
            conn.reset_stream(1)
            await sock.send(conn.data_to_send())
            await app.cancelled.wait()  # the provider sidecar reset its upstream stream too


@pytest.mark.parametrize(
    "frame",
    [
        PingFrame(0, opaque_data=b"12345678").serialize(),
        SettingsFrame(0, settings={0x4: 65535}).serialize(),
        WindowUpdateFrame(0, window_increment=1).serialize(),
    ],
    ids=["ping", "settings", "window_update"],
)
async def test_control_frame_floods_end_the_connection(frame: bytes) -> None:
    app = App()
    async with provider(app) as port, anyio.create_task_group() as tg:
        statuses: list[int] = []

        async def meanwhile() -> None:
            statuses.append(await served(port))

        tg.start_soon(meanwhile)
        sent = await flood(port, frame, 200_000)
        assert sent < 200_000  # closed long before the flood was over
        assert await served(port) == 200
    assert statuses == [200]
