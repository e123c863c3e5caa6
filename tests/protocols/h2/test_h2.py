"""The HTTP/2 server and client pool on loopback: multiplexing, flow control, resets, GOAWAY."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx
import pytest

from sofamesh.codecs.h2 import PREFACE, H2Limits
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.protocols.h2.client import H2Pool
from sofamesh.protocols.h2.http import H2HttpHandler, send_http
from sofamesh.protocols.h2.server import H2Handler, H2Server
from sofamesh.protocols.h2.stream import CONNECTION_LOST, H2Stream, StreamResetError
from sofamesh.protocols.http.server import Http1Server
from sofamesh.transport.errors import ConnectError

pytestmark = pytest.mark.anyio


def head(path: str = "/echo") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"t"),
    ]


async def echo(stream: H2Stream) -> None:
    """Streams the request body back, chunk by chunk, then trailers."""
    await stream.send_headers([(b":status", b"200")])
    while (chunk := await stream.receive_data()) is not None:
        await stream.send_data(chunk)
    await stream.send_trailers([(b"x-done", b"1")])


@asynccontextmanager
async def serving(server: H2Server) -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield port
        tg.cancel_scope.cancel()


@asynccontextmanager
async def client_of(handler: H2Handler, **kw: object) -> AsyncIterator[tuple[H2Pool, int]]:
    async with serving(H2Server(handler, **kw)) as port, H2Pool() as pool:  # type: ignore[arg-type]
        yield pool, port


async def read_all(stream: H2Stream) -> bytes:
    parts = []
    while (chunk := await stream.receive_data()) is not None:
        parts.append(chunk)
    return b"".join(parts)


async def test_request_and_response_with_trailers() -> None:
    async with client_of(echo) as (pool, port):
        s = await pool.open_stream("127.0.0.1", port, head())
        await s.send_data(b"hello", end_stream=True)
        assert (await s.receive_headers())[0] == (b":status", b"200")
        assert await read_all(s) == b"hello"
        assert s.trailers == [(b"x-done", b"1")]
        s.conn.finished(s)


async def test_hundred_concurrent_streams_share_one_connection() -> None:
    async with client_of(echo) as (pool, port):

        async def one(i: int) -> None:
            s = await pool.open_stream("127.0.0.1", port, head())
            await s.send_data(b"%d" % i, end_stream=True)
            await s.receive_headers()
            assert await read_all(s) == b"%d" % i
            s.conn.finished(s)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(one, i)
        assert pool.statistics().connections == 1
        assert pool.statistics().connections_opened == 1


async def test_four_megabytes_through_small_windows() -> None:
    small = H2Limits(stream_window=65_535, connection_window=131_072)
    async with client_of(echo, limits=small) as (pool, port):
        s = await pool.open_stream("127.0.0.1", port, head())
        body = bytes(range(256)) * (4 * 4096)
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.send_data, body, True)
            await s.receive_headers()
            with anyio.fail_after(20):
                assert await read_all(s) == body
        s.conn.finished(s)


async def test_a_reader_that_waits_stalls_the_sender_at_the_window() -> None:
    started = anyio.Event()
    go = anyio.Event()
    seen: list[int] = []

    async def slow(stream: H2Stream) -> None:
        started.set()
        await go.wait()
        seen.append(sum(len(d) for d, _ in stream.chunks))  # what arrived unread
        await stream.send_headers([(b":status", b"200")])
        total = len(await read_all(stream))
        await stream.send_data(b"%d" % total, end_stream=True)

    window = H2Limits(stream_window=100_000)
    async with client_of(slow, limits=window) as (pool, port):
        s = await pool.open_stream("127.0.0.1", port, head())
        done = anyio.Event()

        async def send() -> None:
            await s.send_data(b"z" * 500_000, end_stream=True)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await started.wait()
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()  # blocked on flow control, not buffered
            go.set()
            await s.receive_headers()
            assert await read_all(s) == b"500000"
        assert seen[0] <= 100_000
        s.conn.finished(s)


async def test_a_reset_stream_leaves_its_neighbours_alone() -> None:
    async def handler(stream: H2Stream) -> None:
        if stream.headers and (b":path", b"/reset") in stream.headers:
            stream.reset(0x2)
            return
        await echo(stream)

    async with client_of(handler) as (pool, port):
        good = await pool.open_stream("127.0.0.1", port, head())
        bad = await pool.open_stream("127.0.0.1", port, head("/reset"), end_stream=True)
        with pytest.raises(StreamResetError) as exc:
            await bad.receive_headers()
        assert exc.value.error_code == 0x2 and not exc.value.refused
        await good.send_data(b"still here", end_stream=True)
        await good.receive_headers()
        assert await read_all(good) == b"still here"
        good.conn.finished(good)
        bad.conn.finished(bad)


async def test_a_failing_handler_resets_with_internal_error() -> None:
    async def boom(stream: H2Stream) -> None:
        raise RuntimeError("bug")

    async with client_of(boom) as (pool, port):
        s = await pool.open_stream("127.0.0.1", port, head(), end_stream=True)
        with pytest.raises(StreamResetError) as exc:
            await s.receive_headers()
        assert exc.value.error_code == 0x2


async def test_drain_finishes_streams_in_flight_then_closes() -> None:
    release = anyio.Event()
    entered = anyio.Event()

    async def held(stream: H2Stream) -> None:
        entered.set()
        await release.wait()
        await stream.send_headers([(b":status", b"200")], end_stream=True)

    server = H2Server(held)
    async with serving(server) as port, H2Pool() as pool:
        s = await pool.open_stream("127.0.0.1", port, head(), end_stream=True)
        await entered.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.drain)
            await anyio.wait_all_tasks_blocked()
            assert s.conn.goaway_received is not None  # told: no new streams
            assert not s.conn.available
            release.set()
            assert (await s.receive_headers())[0] == (b":status", b"200")
        assert server.statistics().active_connections == 0
        with pytest.raises(ConnectError):
            await pool.open_stream("127.0.0.1", port, head())


async def test_lost_connection_fails_open_streams() -> None:
    entered = anyio.Event()

    async def hang(stream: H2Stream) -> None:
        entered.set()
        await anyio.sleep_forever()

    async with client_of(hang) as (pool, port):
        s = await pool.open_stream("127.0.0.1", port, head(), end_stream=True)
        await entered.wait()
        await s.conn.sock.aclose()
        with pytest.raises(StreamResetError) as exc:
            await s.receive_headers()
        assert exc.value.error_code == CONNECTION_LOST


async def test_protocol_error_from_a_peer_gets_goaway_and_close() -> None:
    async with serving(H2Server(echo)) as port:
        sock = await anyio.connect_tcp("127.0.0.1", port)
        # a DATA frame on stream 0 is a connection error (RFC 9113 §6.1)
        await sock.send(
            PREFACE
            + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
            + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"
        )
        received = b""
        with anyio.fail_after(5):
            try:
                while True:
                    received += await sock.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
        await sock.aclose()
        i = received.find(b"\x07\x00\x00\x00\x00\x00")  # GOAWAY header: type 7, flags 0, stream 0
        assert i > 0
        assert received[i + 10 : i + 14] == b"\x00\x00\x00\x01"  # PROTOCOL_ERROR


async def test_http1_and_h2c_share_a_port() -> None:
    async def hello(req: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [(b"x-seen", req.method.encode())], b"via " + req.body)

    h2_http = H2HttpHandler(hello, max_body=1024)
    http1 = Http1Server(lambda req, _conn: hello(req))
    async with serving(H2Server(h2_http, http1=http1)) as port, H2Pool() as pool:
        async with httpx.AsyncClient() as client:
            r = await client.post(f"http://127.0.0.1:{port}/x", content=b"h1")
        assert (r.status_code, r.text, r.headers["x-seen"]) == (200, "via h1", "POST")
        req = HttpRequest(method="PUT", target="/y", headers=[(b"host", b"svc")], body=b"h2")
        resp = await send_http(pool, "127.0.0.1", port, req, max_body=1024)
        assert (resp.status, resp.body) == (200, b"via h2")
        assert (b"x-seen", b"PUT") in resp.headers


async def test_connect_error_when_nobody_listens() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    async with H2Pool() as pool:
        with pytest.raises(ConnectError):
            await pool.open_stream("127.0.0.1", port, head())


async def test_connections_over_the_limit_are_closed_on_accept() -> None:
    async with serving(H2Server(echo, max_connections=1)) as port, H2Pool() as first:
        s = await first.open_stream("127.0.0.1", port, head(), end_stream=True)
        await s.receive_headers()  # the first connection is admitted and serving
        extra = await anyio.connect_tcp("127.0.0.1", port)
        with anyio.fail_after(5):
            try:
                await extra.send(PREFACE)
                assert await extra.receive() == b""
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass  # closed: what we expect
        await extra.aclose()
        s.conn.finished(s)


async def test_a_reset_says_which_side_made_it() -> None:
    """The handler of a request whose DATA passed its content-length hears that this side
    reset the stream for a malformed message; a client's own RST_STREAM is the peer's."""
    send, receive = anyio.create_memory_object_stream[str](2)
    entered = anyio.Event()

    async def reader(stream: H2Stream) -> None:
        entered.set()
        try:
            await read_all(stream)
        except StreamResetError as exc:
            await send.send(str(exc))

    reasons = []
    async with client_of(reader) as (pool, port), send, receive:
        for headers, data, code in [
            ([*head(), (b"content-length", b"2")], b"abcdef", None),
            (head(), b"a", 0x8),
        ]:
            entered = anyio.Event()
            stream = await pool.open_stream("127.0.0.1", port, headers)
            await entered.wait()  # the handler runs before the body arrives
            await stream.send_data(data)
            if code is not None:
                stream.reset(code)
            with anyio.fail_after(5):
                reasons.append(await receive.receive())
    assert reasons == [
        "stream reset here: the peer's frames were malformed (error code 1)",
        "stream reset by the peer (error code 8)",
    ]
