"""Http1Pool against real servers on 127.0.0.1: reuse, expiry, retries, limits, cancellation."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from anyio import wait_all_tasks_blocked
from http1_support import echo, holding, raw_server, read_head, serving

import sofamesh.transport.net
from sofamesh.clock import FakeClock
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.protocols.http.server import ConnInfo, Http1Server
from sofamesh.transport.errors import (
    ConnectError,
    PoolClosedError,
    UpstreamProtocolError,
    UpstreamResetError,
)

pytestmark = pytest.mark.anyio

GET = HttpRequest("GET", "/", [])
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def conn_id(pool: Http1Pool, port: int, target: str = "/") -> bytes | None:
    response = await pool.send("127.0.0.1", port, HttpRequest("GET", target, []))
    return response.header(b"x-conn")


async def test_keep_alive_connections_are_reused() -> None:
    server = Http1Server(echo)
    async with serving(server) as port, Http1Pool() as pool:
        response = await pool.send("127.0.0.1", port, HttpRequest("POST", "/", [], b"hey"))
        assert (response.status, response.body) == (200, b"hey")
        assert [await conn_id(pool, port) for _ in range(3)] == [b"1"] * 3
        stats = pool.statistics()
        assert (stats.connections_opened, stats.requests, stats.idle_connections) == (1, 4, 1)
    assert server.statistics().accepted_connections == 1


async def test_most_recently_used_connection_is_reused_first() -> None:
    gates = {"/a": anyio.Event(), "/b": anyio.Event()}
    entered = anyio.Event()

    async def gated(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
        if request.target in gates:
            if request.target == "/b":
                entered.set()
            await gates[request.target].wait()
        return await echo(request, conn)

    async with serving(Http1Server(gated)) as port, Http1Pool() as pool:
        done: dict[str, bytes | None] = {}
        a_done = anyio.Event()

        async def call(target: str) -> None:
            done[target] = await conn_id(pool, port, target)
            if target == "/a":
                a_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "/a")
            tg.start_soon(call, "/b")
            await entered.wait()
            gates["/a"].set()  # /a returns its connection first ...
            await a_done.wait()
            gates["/b"].set()  # ... then /b: its connection is on top of the stack
        assert await conn_id(pool, port) == done["/b"] != done["/a"]


async def test_expired_idle_connection_is_replaced_on_checkout() -> None:
    clock = FakeClock()
    async with serving(Http1Server(echo)) as port, Http1Pool(idle_timeout=30, clock=clock) as pool:
        assert await conn_id(pool, port) == b"1"
        clock.advance(29)
        assert await conn_id(pool, port) == b"1"
        clock.advance(30)
        assert await conn_id(pool, port) == b"2"
        stats = pool.statistics()
        assert (stats.expired_connections, stats.open_connections) == (1, 1)


async def test_reaper_closes_expired_idle_connections() -> None:
    clock = FakeClock()
    async with serving(Http1Server(echo)) as port, Http1Pool(idle_timeout=30, clock=clock) as pool:
        await conn_id(pool, port)
        assert await pool.reap_idle() == 0
        clock.advance(31)
        assert await pool.reap_idle() == 1
        stats = pool.statistics()
        assert (stats.open_connections, stats.idle_connections, stats.endpoints) == (0, 0, 0)


async def test_stale_keep_alive_connection_is_retried_once_on_a_fresh_one() -> None:
    served = 0

    async def answer_once_then_close(stream: anyio.abc.SocketStream) -> None:
        nonlocal served
        async with stream:
            await read_head(stream)
            served += 1
            await stream.send(OK)  # keep-alive by its headers, closed anyway
            closed.set()

    closed = anyio.Event()
    async with raw_server(answer_once_then_close) as port, Http1Pool() as pool:
        assert (await pool.send("127.0.0.1", port, GET)).body == b"ok"
        await closed.wait()
        assert (await pool.send("127.0.0.1", port, GET)).body == b"ok"
        stats = pool.statistics()
        assert (stats.stale_retries, stats.connections_opened, served) == (1, 2, 2)


async def test_fresh_connection_closed_before_answering_is_a_reset() -> None:
    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_head(stream)

    async with raw_server(hang_up) as port, Http1Pool() as pool:
        with pytest.raises(UpstreamResetError, match="closed before responding"):
            await pool.send("127.0.0.1", port, GET)
        assert pool.statistics().stale_retries == 0


async def test_connection_lost_mid_response_is_a_reset_and_not_retried() -> None:
    async def half_answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_head(stream)
            await stream.send(OK[:-1])

    async with raw_server(half_answer) as port, Http1Pool() as pool:
        with pytest.raises(UpstreamResetError, match="mid-response"):
            await pool.send("127.0.0.1", port, GET)
        assert pool.statistics().connections_opened == 1


async def test_garbage_from_upstream_is_a_protocol_error() -> None:
    async def garbage(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_head(stream)
            await stream.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    async with raw_server(garbage) as port, Http1Pool() as pool:
        with pytest.raises(UpstreamProtocolError, match=f"127.0.0.1:{port}"):
            await pool.send("127.0.0.1", port, GET)
        assert pool.statistics().open_connections == 0


async def test_refused_connection_is_a_connect_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    async with Http1Pool() as pool:
        with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
            await pool.send("127.0.0.1", port, GET)
        assert pool.statistics().connect_errors == 1


async def test_connect_timeout_is_a_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*_args: object, **_kwargs: object) -> anyio.abc.SocketStream:
        await anyio.sleep_forever()
        raise AssertionError

    monkeypatch.setattr(sofamesh.transport.net, "connect_tcp", never)
    async with Http1Pool(connect_timeout=0.01) as pool:
        with pytest.raises(ConnectError, match="timed out"):
            await pool.send("127.0.0.1", 9, GET)


async def test_per_endpoint_limit_queues_callers_under_their_deadline() -> None:
    entered, release = anyio.Event(), anyio.Event()

    held = holding("/held", entered, release)

    server = Http1Server(held)
    async with serving(server) as port, Http1Pool(max_connections_per_endpoint=1) as pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn_id, pool, port, "/held")
            await entered.wait()
            with pytest.raises(TimeoutError), anyio.fail_after(0.05):
                await conn_id(pool, port)  # queued behind /held, until its deadline
            assert pool.statistics().waiting_requests == 0
            tg.start_soon(conn_id, pool, port)  # queued; runs once /held is done
            release.set()
        assert await conn_id(pool, port) == b"1"
        assert pool.statistics().connections_opened == 1
    assert server.statistics().accepted_connections == 1


async def test_cancelled_exchange_closes_its_connection_and_frees_its_slot() -> None:
    entered = anyio.Event()

    stuck = holding("/stuck", entered)

    async with (
        serving(Http1Server(stuck)) as port,
        Http1Pool(max_connections_per_endpoint=1) as pool,
    ):
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn_id, pool, port, "/stuck")
                await entered.wait()
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert pool.statistics().open_connections == 0
        assert await conn_id(pool, port) == b"2"  # the slot is free, on a new connection


async def test_timeout_ends_a_stuck_exchange_and_drops_its_connection() -> None:
    entered, later, release = anyio.Event(), anyio.Event(), anyio.Event()
    stuck = holding("/stuck", entered)

    async def handle(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
        if request.target == "/later":
            later.set()
            await release.wait()
        return await stuck(request, conn)

    async with serving(Http1Server(handle)) as port, Http1Pool() as pool:
        with anyio.move_on_after(5) as guard, pytest.raises(TimeoutError):
            await pool.send("127.0.0.1", port, HttpRequest("GET", "/stuck", []), timeout=0.05)
        assert not guard.cancelled_caught and entered.is_set()
        stats = pool.statistics()
        assert (stats.open_connections, stats.idle_connections) == (0, 0)
        # A timely answer under a timeout, on a fresh connection (its connect included: 0.5 s
        # leaves room on a loaded machine); the timer armed for it must not fire into the
        # next, unlimited, exchange, which the server holds until that deadline has passed.
        deadline = anyio.current_time() + 0.5
        reply = await pool.send("127.0.0.1", port, GET, timeout=0.5)
        assert reply.header(b"x-conn") == b"2"

        async def release_past_the_deadline() -> None:
            await later.wait()
            await anyio.sleep_until(deadline + 0.1)
            release.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(release_past_the_deadline)
            assert await conn_id(pool, port, "/later") == b"2"


async def test_a_slot_handed_to_a_cancelled_waiter_goes_on_to_the_next() -> None:
    """/held's end hands its slot straight to the first waiter, which is cancelled before it
    has run (its exchange then fails): the slot goes on to the next waiter, not lost."""
    entered, release = anyio.Event(), anyio.Event()
    waiter = anyio.CancelScope()
    got: list[bytes | None] = []

    async def first() -> None:
        await conn_id(pool, port, "/held")
        waiter.cancel()  # the slot is the waiter's now, and it has not run since

    async def cancelled() -> None:
        with waiter:
            got.append(await conn_id(pool, port, "/cancelled"))

    async def last() -> None:
        got.append(await conn_id(pool, port, "/last"))

    async with (
        serving(Http1Server(holding("/held", entered, release))) as port,
        Http1Pool(max_connections_per_endpoint=1) as pool,
    ):
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                await entered.wait()
                for queued in (cancelled, last):  # queued in this order
                    tg.start_soon(queued)
                    await wait_all_tasks_blocked()
                assert pool.statistics().waiting_requests == 2
                release.set()
        assert len(got) == 1 and waiter.cancelled_caught  # the last waiter's answer only
        stats = pool.statistics()
        assert (stats.waiting_requests, stats.idle_connections) == (0, 1)
        assert await conn_id(pool, port) == got[0]  # the slot is free again


async def test_timeout_covers_the_wait_for_a_slot() -> None:
    entered, release = anyio.Event(), anyio.Event()

    held = holding("/held", entered, release)

    async with (
        serving(Http1Server(held)) as port,
        Http1Pool(max_connections_per_endpoint=1) as pool,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(conn_id, pool, port, "/held")
        await entered.wait()
        with anyio.move_on_after(5) as guard, pytest.raises(TimeoutError):
            await pool.send("127.0.0.1", port, GET, timeout=0.05)
        assert not guard.cancelled_caught
        assert pool.statistics().waiting_requests == 0
        release.set()


async def test_an_expired_timeout_sends_nothing() -> None:
    seen: list[str] = []

    async def record(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
        seen.append(request.target)
        return await echo(request, conn)

    async with serving(Http1Server(record)) as port, Http1Pool() as pool:
        with pytest.raises(TimeoutError):
            await pool.send("127.0.0.1", port, GET, timeout=0.0)
        assert seen == [] and pool.statistics().connections_opened == 0


async def test_closed_pool_refuses_and_fails_in_flight_exchanges() -> None:
    entered = anyio.Event()

    async def stuck(request: HttpRequest, _conn: ConnInfo) -> HttpResponse:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError

    async with serving(Http1Server(stuck)) as port:
        pool = Http1Pool()
        async with pool:
            failures: list[BaseException] = []

            async def call() -> None:
                try:
                    await pool.send("127.0.0.1", port, GET)
                except PoolClosedError as exc:
                    failures.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await entered.wait()
                await pool.aclose()
            assert len(failures) == 1
            assert pool.statistics().open_connections == 0
        with pytest.raises(PoolClosedError):
            await pool.send("127.0.0.1", port, GET)


async def test_response_that_closes_is_not_pooled() -> None:
    async def closing(request: HttpRequest, conn: ConnInfo) -> HttpResponse:
        response = await echo(request, conn)
        response.headers.append((b"connection", b"close"))
        return response

    async with serving(Http1Server(closing)) as port, Http1Pool() as pool:
        assert [await conn_id(pool, port) for _ in range(2)] == [b"1", b"2"]
        assert pool.statistics().idle_connections == 0
