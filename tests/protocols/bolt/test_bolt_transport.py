"""The Bolt transport on loopback: multiplexed client connections with heartbeats, the pool,
and the server's handling of every kind of bad input."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from bolt_support import RawPeer, bolt_server, raw_client, raw_server
from tests.codecs.bolt.bolt_vectors import V2_CRC_REQUEST

from sofamesh.codecs.bolt import (
    FrameKind,
    RequestFrame,
    ResponseFrame,
    ResponseStatus,
    encode,
    encode_header_map,
    heartbeat,
    heartbeat_ack,
    reply,
    request,
)
from sofamesh.codecs.bolt.headers import DEFAULT_MAX_HEADER_ENTRIES
from sofamesh.codecs.bolt.request_ids import MAX_REQUEST_ID
from sofamesh.codecs.bolt.sofarpc import error_of
from sofamesh.protocols.bolt.client import BoltClientConnection, CallTimeoutError, HeartbeatConfig
from sofamesh.protocols.bolt.mapping import ERROR_HEADER, invocation_of
from sofamesh.protocols.bolt.pool import BoltPool, BoltPoolConfig
from sofamesh.protocols.bolt.server import BoltConnInfo
from sofamesh.transport.errors import ConnectError, UpstreamResetError

pytestmark = pytest.mark.anyio

NO_HEARTBEATS = HeartbeatConfig(enabled=False)


async def echo(frame: RequestFrame, _info: BoltConnInfo) -> ResponseFrame:
    return reply(frame, body=frame.body)


@asynccontextmanager
async def client(
    port: int, heartbeats: HeartbeatConfig = NO_HEARTBEATS, first_request_id: int = 1
) -> AsyncIterator[BoltClientConnection]:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    conn = BoltClientConnection(
        stream, f"127.0.0.1:{port}", heartbeats=heartbeats, first_request_id=first_request_id
    )
    async with anyio.create_task_group() as tg:
        await tg.start(conn.run)
        yield conn
        await conn.aclose()


# -- the client connection -------------------------------------------------------------------


async def test_calls_share_one_connection_and_are_answered_in_any_order() -> None:
    release = {body: anyio.Event() for body in (b"a", b"b", b"c")}
    all_in = anyio.Event()
    started: list[bytes] = []

    async def handler(frame: RequestFrame, _info: BoltConnInfo) -> ResponseFrame:
        started.append(frame.body)
        if len(started) == 3:
            all_in.set()
        await release[frame.body].wait()
        return reply(frame, body=frame.body.upper())

    got: dict[bytes, bytes] = {}
    async with bolt_server(handler) as (server, port), client(port) as conn:

        async def call(body: bytes) -> None:
            got[body] = (await conn.call(request(0, body))).body

        async with anyio.create_task_group() as tg:
            for body in release:
                tg.start_soon(call, body)
            await all_in.wait()  # three calls in flight on one connection at once
            assert conn.in_flight == 3
            for body in (b"c", b"b", b"a"):
                release[body].set()
        assert server.statistics().accepted_connections == 1
    assert got == {b"a": b"A", b"b": b"B", b"c": b"C"}


async def test_request_ids_wrap_to_one() -> None:
    first = MAX_REQUEST_ID - 1
    async with raw_server() as (port, accepted), client(port, first_request_id=first) as conn:
        seen: list[int] = []

        async def answer(peer: RawPeer) -> None:
            while (frame := await peer.next_frame()) is not None:
                seen.append(frame.request_id)
                assert isinstance(frame, RequestFrame)
                await peer.send(reply(frame, body=frame.body))

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer, await accepted.receive())
            for i in range(4):
                assert (await conn.call(request(0, b"%d" % i))).body == b"%d" % i
            tg.cancel_scope.cancel()
    assert seen == [MAX_REQUEST_ID - 1, MAX_REQUEST_ID, 1, 2]


async def test_heartbeats_keep_an_idle_connection_alive() -> None:
    hb = HeartbeatConfig(interval=0.03, timeout=1.0, max_missed=1)
    async with raw_server() as (port, accepted), client(port, hb) as conn:
        peer = await accepted.receive()
        for _ in range(3):
            frame = await peer.next_frame()
            assert frame is not None and frame.kind is FrameKind.HEARTBEAT
            await peer.send(heartbeat_ack(frame))
        assert not conn.closed
        stats = conn.statistics()
        assert stats.heartbeats_sent >= 3 and stats.heartbeats_missed == 0


async def test_unanswered_heartbeats_close_the_connection_and_fail_its_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hb = HeartbeatConfig(interval=0.02, timeout=0.02, max_missed=2)
    async with raw_server() as (port, _accepted), client(port, hb) as conn:
        with pytest.raises(UpstreamResetError, match="missed 2 heartbeats"):
            await conn.call(request(0, b"never answered"))
        assert conn.closed and conn.statistics().heartbeats_missed == 2
        with pytest.raises(ConnectError):  # a closed connection sends nothing more
            await conn.call(request(0, b"x"))
    assert "2 heartbeats unanswered" in caplog.text


async def test_a_dying_peer_fails_only_its_own_calls() -> None:
    async with (
        raw_server() as (port_a, accepted_a),
        raw_server() as (port_b, accepted_b),
        client(port_a) as to_a,
        client(port_b) as to_b,
    ):
        results: dict[str, object] = {}

        async def call(name: str, conn: BoltClientConnection) -> None:
            try:
                results[name] = (await conn.call(request(0, name.encode()))).body
            except UpstreamResetError as exc:
                results[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "a", to_a)
            tg.start_soon(call, "b", to_b)
            peer_a, peer_b = await accepted_a.receive(), await accepted_b.receive()
            await peer_a.next_frame()
            frame_b = await peer_b.next_frame()
            await peer_a.stream.aclose()  # a dies with a call in flight
            assert isinstance(frame_b, RequestFrame)
            await peer_b.send(reply(frame_b, body=b"fine"))
        assert isinstance(results["a"], UpstreamResetError)
        assert "closed by the peer" in str(results["a"])
        assert results["b"] == b"fine" and not to_b.closed


async def test_a_late_response_is_dropped() -> None:
    async with raw_server() as (port, accepted), client(port) as conn:
        with anyio.move_on_after(0.05):
            await conn.call(request(0, b"slow"))  # the caller gives up
        peer = await accepted.receive()
        first = await peer.next_frame()
        assert isinstance(first, RequestFrame)
        await peer.send(reply(first, body=b"too late"))
        async with anyio.create_task_group() as tg:

            async def answer_next() -> None:
                frame = await peer.next_frame()
                assert isinstance(frame, RequestFrame)
                await peer.send(reply(frame, body=b"on time"))

            tg.start_soon(answer_next)
            assert (await conn.call(request(0, b"next"))).body == b"on time"
        assert conn.statistics().late_responses == 1


async def test_pool_opens_one_connection_for_a_burst_and_reports_connect_errors() -> None:
    async with bolt_server(echo) as (_server, port), BoltPool() as pool:
        bodies: list[bytes] = []

        async def call(i: int) -> None:
            bodies.append((await pool.call("127.0.0.1", port, request(0, b"%d" % i))).body)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(call, i)
        assert sorted(bodies) == sorted(b"%d" % i for i in range(50))
        assert pool.statistics().connections_opened == 1
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        dead = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
        with pytest.raises(ConnectError):
            await pool.call("127.0.0.1", dead, request(0, b""))
        assert pool.statistics().connect_errors == 1


async def test_a_pool_call_gives_up_at_its_deadline_and_the_connection_carries_on() -> None:
    async with raw_server() as (port, accepted), BoltPool() as pool:
        async with anyio.create_task_group() as tg:

            async def answer_late() -> None:
                peer = await accepted.receive()
                first = await peer.next_frame()
                assert isinstance(first, RequestFrame)
                second = await peer.next_frame()  # sent after the first call gave up
                assert isinstance(second, RequestFrame)
                await peer.send(reply(first, body=b"too late"))
                await peer.send(reply(second, body=b"on time"))

            tg.start_soon(answer_late)
            started = anyio.current_time()
            with pytest.raises(CallTimeoutError):  # no cancel scope: the watch wakes it
                await pool.call("127.0.0.1", port, request(0, b"slow"), started + 0.05)
            assert anyio.current_time() - started < 5
            resp = await pool.call("127.0.0.1", port, request(0, b"next"), started + 30)
            assert resp.body == b"on time"
        conn = await pool.connection("127.0.0.1", port)
        assert (conn.in_flight, conn.statistics().late_responses) == (0, 1)


async def test_pool_spreads_calls_over_its_connections() -> None:
    config = BoltPoolConfig(connections_per_endpoint=3)
    async with bolt_server(echo) as (server, port), BoltPool(config) as pool:
        for _ in range(6):
            await pool.call("127.0.0.1", port, request(0, b""))
        assert server.statistics().accepted_connections == 3


# -- the server ------------------------------------------------------------------------------


async def test_server_answers_heartbeats_itself() -> None:
    async def never(frame: RequestFrame, _info: BoltConnInfo) -> ResponseFrame:
        raise AssertionError("heartbeats must not reach the handler")

    async with bolt_server(never) as (server, port), raw_client(port) as peer:
        await peer.send(heartbeat(7))
        assert await peer.next_frame() == heartbeat_ack(heartbeat(7))
        assert server.statistics().heartbeats == 1


async def test_unknown_protocol_byte_closes_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with bolt_server(echo) as (server, port), raw_client(port) as good:
        async with raw_client(port) as bad:
            await bad.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert await bad.closed()
        await good.send(request(1, b"still here"))
        answer = await good.next_frame()
        assert isinstance(answer, ResponseFrame) and answer.body == b"still here"
        assert server.statistics().protocol_errors == 1
    assert "unknown protocol byte 0x47" in caplog.text and "closing the connection" in caplog.text


async def test_body_over_the_limit_gets_codec_exception_then_close() -> None:
    from sofamesh.codecs.bolt import BoltLimits

    async with (
        bolt_server(echo, limits=BoltLimits(max_body_size=1024)) as (_server, port),
        raw_client(port) as peer,
    ):
        await peer.send(request(41, b"x" * 2048))
        answer = await peer.next_frame()
        assert isinstance(answer, ResponseFrame) and answer.request_id == 41
        assert answer.status == ResponseStatus.CODEC_EXCEPTION
        assert "exceeds the limit of 1024" in error_of(answer.body)[0]
        assert await peer.closed()


async def test_impossible_lengths_get_codec_exception_then_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    frame = bytearray(encode(request(42, b"body")))
    frame[18:22] = b"\xff\xff\xff\xff"  # contentLen -1
    async with bolt_server(echo) as (server, port), raw_client(port) as peer:
        await peer.send(bytes(frame))
        answer = await peer.next_frame()
        assert isinstance(answer, ResponseFrame) and answer.request_id == 42
        assert answer.status == ResponseStatus.CODEC_EXCEPTION
        assert await peer.closed()
        assert server.statistics().protocol_errors == 1
    assert "negative length in frame 42" in caplog.text


async def test_bad_crc_gets_codec_exception_then_close(caplog: pytest.LogCaptureFixture) -> None:
    corrupted = bytearray(V2_CRC_REQUEST)
    corrupted[200] ^= 0xFF
    async with bolt_server(echo) as (_server, port), raw_client(port) as peer:
        await peer.send(bytes(corrupted))
        answer = await peer.next_frame()
        assert isinstance(answer, ResponseFrame) and answer.request_id == 5
        assert answer.status == ResponseStatus.CODEC_EXCEPTION
        assert (answer.version, answer.has_crc) == (2, True)  # answered in the caller's framing
        assert await peer.closed()
    assert "CRC32 mismatch" in caplog.text


async def test_skippable_frames_get_an_error_and_the_connection_carries_on() -> None:
    bad_code = bytearray(encode(request(3, b"")))
    bad_code[3] = 2  # a request with the response command code
    bad_map = encode(RequestFrame(4, b"", header=b"\x00\x00\x00\x09ab"))
    async with bolt_server(echo) as (_server, port), raw_client(port) as peer:
        await peer.send(bytes(bad_code), bad_map, request(5, b"fine"))
        answers = [await peer.next_frame() for _ in range(3)]
    assert [(a.request_id, a.status) for a in answers if isinstance(a, ResponseFrame)] == [
        (3, ResponseStatus.CODEC_EXCEPTION),
        (4, ResponseStatus.CODEC_EXCEPTION),
        (5, ResponseStatus.SUCCESS),
    ]


class _CheckingEcho:
    """`echo` for a handler that reads each request's header map itself, as the mesh's
    listeners do (`invocation_of`): the server's decoder then leaves the map to it."""

    checks_header_maps = True

    async def __call__(self, frame: RequestFrame, info: BoltConnInfo) -> ResponseFrame:
        invocation_of(frame)
        return await echo(frame, info)


async def test_a_malformed_header_map_a_handler_finds_is_refused_as_the_decoder_refuses_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    too_many = encode_header_map([(f"k{i}", "v") for i in range(DEFAULT_MAX_HEADER_ENTRIES + 1)])
    frames = [
        RequestFrame(4, b"", header=b"\x00\x00\x00\x09ab"),  # overruns the map
        RequestFrame(5, b"", header=b"\x00\x00\x00\x01a\x00\x00"),  # stray bytes
        RequestFrame(6, b"", header=too_many, oneway=True),  # answered all the same
        request(7, b"fine", headers={"service": "s"}),
    ]
    seen = []
    for handler in (echo, _CheckingEcho()):
        caplog.clear()
        async with bolt_server(handler) as (server, port), raw_client(port) as peer:
            await peer.send(*frames)
            got = [await peer.next_frame() for _ in range(4)]
            stats = server.statistics()
        answers = sorted((a for a in got if a is not None), key=lambda a: a.request_id)
        assert [a.request_id for a in answers] == [4, 5, 6, 7]  # in completion order
        seen.append((answers, stats.requests, stats.protocol_errors, stats.handler_errors))
        assert caplog.text.count("skipped the frame") == 3
    assert seen[0] == seen[1]
    assert seen[0][1:] == (1, 3, 0)


async def test_oneway_requests_run_without_a_response() -> None:
    ran = anyio.Event()

    async def handler(frame: RequestFrame, _info: BoltConnInfo) -> ResponseFrame:
        ran.set()
        return reply(frame)

    async with bolt_server(handler) as (_server, port), raw_client(port) as peer:
        await peer.send(request(1, b"", oneway=True))
        await ran.wait()
        await peer.send(heartbeat(2))
        assert (await peer.next_frame()) == heartbeat_ack(heartbeat(2))  # nothing before it


async def test_a_failing_handler_answers_server_exception(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(frame: RequestFrame, _info: BoltConnInfo) -> ResponseFrame:
        raise RuntimeError("kaput")

    async with bolt_server(broken) as (server, port), raw_client(port) as peer:
        await peer.send(request(9, b""))
        answer = await peer.next_frame()
        assert isinstance(answer, ResponseFrame)
        assert answer.status == ResponseStatus.SERVER_EXCEPTION
        assert error_of(answer.body)[0] == "sofamesh: internal error: RuntimeError"
        assert server.statistics().handler_errors == 1
    assert any("kaput" in (r.exc_text or "") for r in caplog.records)


async def test_idle_connections_are_closed() -> None:
    async with bolt_server(echo, idle_timeout=0.05) as (_server, port), raw_client(port) as peer:
        assert await peer.closed()


async def test_drain_finishes_calls_in_flight_and_turns_new_ones_away() -> None:
    release, entered = anyio.Event(), anyio.Event()

    async def slow(frame: RequestFrame, _info: BoltConnInfo) -> ResponseFrame:
        entered.set()
        await release.wait()
        return reply(frame, body=b"done")

    async with bolt_server(slow) as (server, port), raw_client(port) as peer:
        await peer.send(request(1, b""))
        await entered.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.drain)
            await wait_until(lambda: server.draining)
            await peer.send(request(2, b""))
            busy = await peer.next_frame()
            assert isinstance(busy, ResponseFrame) and busy.request_id == 2
            assert busy.status == ResponseStatus.SERVER_THREADPOOL_BUSY
            assert busy.headers() == ((ERROR_HEADER, "unavailable"),)
            release.set()
            done = await peer.next_frame()
            assert isinstance(done, ResponseFrame) and (done.request_id, done.body) == (1, b"done")
            assert await peer.closed()


async def wait_until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await anyio.lowlevel.checkpoint()


logging.getLogger("sofamesh.bolt").setLevel(logging.DEBUG)
