"""Http1Server on 127.0.0.1: keep-alive, pipelining, errors, limits, timeouts, drain."""

from __future__ import annotations

import logging

import anyio
import pytest
from http1_support import echo, holding, read_exactly, read_head, read_until_eof, serving

from sofamesh.codecs.http1 import Http1Limits, HttpRequest, HttpResponse
from sofamesh.protocols.http.server import ConnInfo, Http1Server

pytestmark = pytest.mark.anyio

GET = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"
ECHO_EMPTY = b"HTTP/1.1 200 OK\r\nx-conn: 1\r\ncontent-length: 0\r\n\r\n"


async def test_keep_alive_connection_serves_requests_in_turn() -> None:
    server = Http1Server(echo)
    async with serving(server) as port, await anyio.connect_tcp("127.0.0.1", port) as s:
        for body in (b"one", b"two"):
            await s.send(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\n" + body)
            expected = b"HTTP/1.1 200 OK\r\nx-conn: 1\r\ncontent-length: 3\r\n\r\n" + body
            assert await read_exactly(s, len(expected)) == expected
    assert server.statistics().requests_served == 2


async def test_pipelined_requests_get_responses_in_order() -> None:
    async def slow_first(request: HttpRequest, _conn: ConnInfo) -> HttpResponse:
        if request.target == "/1":
            for _ in range(10):  # give a wrong implementation every chance to reorder
                await anyio.lowlevel.checkpoint()
        return HttpResponse(200, [], request.target.encode())

    async with (
        serving(Http1Server(slow_first)) as port,
        await anyio.connect_tcp("127.0.0.1", port) as s,
    ):
        await s.send(b"GET /1 HTTP/1.1\r\nhost: t\r\n\r\nGET /2 HTTP/1.1\r\nhost: t\r\n\r\n")
        one = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n/1"
        two = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n/2"
        assert await read_exactly(s, len(one + two)) == one + two


async def test_connection_close_request_gets_close_and_eof() -> None:
    async with serving(Http1Server(echo)) as port, await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        assert await read_until_eof(s) == (
            b"HTTP/1.1 200 OK\r\nx-conn: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )


async def test_expect_100_continue_gets_the_interim_response() -> None:
    async with serving(Http1Server(echo)) as port, await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(
            b"PUT / HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
        )
        assert await read_head(s) == b"HTTP/1.1 100 Continue\r\n\r\n"
        await s.send(b"ok")
        final = b"HTTP/1.1 200 OK\r\nx-conn: 1\r\ncontent-length: 2\r\n\r\nok"
        assert await read_exactly(s, len(final)) == final


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"BLAH\r\n\r\n", b"400 Bad Request"),
        (b"GET / HTTP/1.1\r\nhost: t\r\n" + b"x-big: " + b"a" * 3000 + b"\r\n\r\n", b"431 "),
        (b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 2000\r\n\r\n", b"413 "),
    ],
)
async def test_protocol_errors_are_answered_logged_and_do_not_hurt_others(
    request_: bytes, status: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server = Http1Server(echo, Http1Limits(max_header_bytes=1024, max_body_size=1000))
    async with serving(server) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as bad:
            await bad.send(request_)
            reply = await read_until_eof(bad)
        assert reply.startswith(b"HTTP/1.1 " + status) and b"connection: close\r\n" in reply
        async with await anyio.connect_tcp("127.0.0.1", port) as good:
            await good.send(GET)
            assert await read_head(good) == ECHO_EMPTY.replace(b"x-conn: 1", b"x-conn: 2")
    assert server.statistics().protocol_errors == 1
    (record,) = [r for r in caplog.records if r.name == "sofamesh.http1"]
    assert record.levelno == logging.WARNING
    assert f"http1 {status[:3].decode()} from 127.0.0.1:" in record.getMessage()


async def test_handler_failure_is_a_500_and_the_connection_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def flaky(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
        if request.target == "/boom":
            raise RuntimeError("kaput")
        return await echo(request, conn)

    server = Http1Server(flaky)
    async with serving(server) as port, await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(b"GET /boom HTTP/1.1\r\nhost: t\r\n\r\n")
        err = (
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: 22\r\n\r\ninternal server error\n"
        )
        assert await read_exactly(s, len(err)) == err
        await s.send(GET)
        assert await read_head(s) == ECHO_EMPTY
    assert server.statistics().handler_errors == 1
    assert any("kaput" in (r.exc_text or "") for r in caplog.records)


async def test_connections_over_the_limit_are_closed_and_counted() -> None:
    server = Http1Server(echo, max_connections=1)
    async with serving(server) as port, await anyio.connect_tcp("127.0.0.1", port) as first:
        await first.send(GET)
        assert await read_head(first) == ECHO_EMPTY  # first is admitted and counted
        async with await anyio.connect_tcp("127.0.0.1", port) as second:
            assert await read_until_eof(second) == b""
        await first.send(GET)
        assert await read_head(first) == ECHO_EMPTY
    assert server.statistics().rejected_connections == 1


async def test_idle_keep_alive_connection_is_closed_after_the_timeout() -> None:
    server = Http1Server(echo, keepalive_timeout=0.05)
    async with serving(server) as port, await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(GET)
        assert await read_until_eof(s) == ECHO_EMPTY  # then EOF, without a 408
    assert server.statistics().protocol_errors == 0


async def test_slow_request_head_gets_408(caplog: pytest.LogCaptureFixture) -> None:
    server = Http1Server(echo, header_timeout=0.05)
    async with serving(server) as port, await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(b"GET / HTTP/1.1\r\nhost:")
        reply = await read_until_eof(s)
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert "timed out reading the request head" in caplog.text


async def test_drain_finishes_in_flight_closes_idle_and_stops_accepting() -> None:
    entered, release = anyio.Event(), anyio.Event()

    held = holding("/held", entered, release)

    server = Http1Server(held)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        idle = await anyio.connect_tcp("127.0.0.1", port)
        await idle.send(GET)
        assert await read_head(idle) == ECHO_EMPTY
        busy = await anyio.connect_tcp("127.0.0.1", port)
        await busy.send(b"GET /held HTTP/1.1\r\nhost: t\r\n\r\n")
        await entered.wait()
        tg.start_soon(server.drain)
        assert await read_until_eof(idle) == b""  # idle: closed at once
        release.set()
        assert await read_until_eof(busy) == (
            b"HTTP/1.1 200 OK\r\nx-conn: 2\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        await busy.aclose()  # the server lingers until the client closes too
    # serve() returned by itself once drained, and the listener is gone.
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)
    stats = server.statistics()
    assert stats.draining and stats.active_connections == 0 and stats.requests_served == 2
    await idle.aclose()


async def test_drain_before_any_connection_returns() -> None:
    server = Http1Server(echo)
    async with serving(server):
        with anyio.fail_after(5):
            await server.drain()
    await server.drain()  # idempotent, also when not serving


async def test_conn_info_names_the_peer() -> None:
    seen: list[ConnInfo] = []

    async def record(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
        seen.append(conn)
        return HttpResponse(204)

    async with (
        serving(Http1Server(record)) as port,
        await anyio.connect_tcp("127.0.0.1", port) as s,
    ):
        await s.send(GET + GET)
        await read_exactly(s, 2 * len(b"HTTP/1.1 204 No Content\r\n\r\n"))
    assert seen[0] is seen[1]
    assert seen[0].peer.startswith("127.0.0.1:") and seen[0].local == f"127.0.0.1:{port}"


async def test_slow_request_body_gets_408() -> None:
    server = Http1Server(echo, body_timeout=0.05)
    async with serving(server) as port, await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nab")
        assert (await read_until_eof(s)).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert server.statistics().protocol_errors == 1


async def test_large_last_response_is_not_cut_short_by_the_close() -> None:
    big = bytes(range(256)) * 16384  # 4 MiB: more than any socket buffer holds at once

    async def large(request: HttpRequest, _conn: ConnInfo) -> HttpResponse:
        return HttpResponse(200, [], big)

    async with serving(Http1Server(large)) as port, await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        reply = await read_until_eof(s)
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 4194304\r\nconnection: close\r\n\r\n"
    assert reply[: len(head)] == head and reply[len(head) :] == big


async def test_a_client_that_stops_reading_is_cut_off_after_send_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    big = b"x" * (32 << 20)  # more than the kernel buffers on both sides hold

    async def large(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
        return HttpResponse(200, [], big) if request.target == "/big" else await echo(request, conn)

    server = Http1Server(large, send_timeout=0.2)
    async with serving(server) as port:
        stuck = await anyio.connect_tcp("127.0.0.1", port)
        await stuck.send(b"GET /big HTTP/1.1\r\nhost: t\r\n\r\n")  # and never reads the answer
        with anyio.fail_after(10):
            while server.statistics().active_connections:
                async with await anyio.connect_tcp("127.0.0.1", port) as other:
                    await other.send(GET)  # everyone else is served meanwhile
                    assert (await read_head(other)).startswith(b"HTTP/1.1 200 OK\r\n")
                await anyio.sleep(0.05)
        await stuck.aclose()
    assert "took no response within 0.2s" in caplog.text
