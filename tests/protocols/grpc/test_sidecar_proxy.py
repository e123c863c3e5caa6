"""gRPC through two sidecars in this process: grpcio client -> sidecar -> sidecar -> grpcio server.

Unary and every streaming kind, 4 MB messages, 100 concurrent streams, a
provider that resets a stream, a deadline that expires mid-stream, and the
statuses the mesh produces itself. The grpcio peers run on their own threads,
so each test runs on asyncio and on trio.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import grpc
import pytest
from grpc_support import Peers, channel

from sofamesh.config import Address, load_config
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.h2.stream import H2Stream
from sofamesh.sidecar.app import Sidecar
from sofamesh.testing.process import poll_until
from sofamesh.transport.budget import OVERLOAD

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def mesh(upstream: int, services: list[str]) -> AsyncIterator[Address]:
    """A provider sidecar in front of `upstream` and a consumer sidecar; yields its outbound."""
    registry = "memory://"
    prov = Sidecar(
        load_config(
            {
                "app": "prov",
                "registry": registry,
                "inbound": [
                    {
                        "protocol": "grpc",
                        "listen": "127.0.0.1:0",
                        "upstream": f"127.0.0.1:{upstream}",
                        "services": services,
                    }
                ],
            },
            env={},
        )
    )
    cons = Sidecar(
        load_config(
            {
                "app": "shop",
                "registry": registry,
                "outbound": [{"protocol": "grpc", "listen": "127.0.0.1:0"}],
            },
            env={},
        )
    )
    async with anyio.create_task_group() as tg:
        await tg.start(prov.run)
        await tg.start(cons.run)
        yield cons.bound["outbound[0]"]
        prov.stop()
        cons.stop()


async def in_thread(fn: Callable[[], Any]) -> Any:
    with anyio.fail_after(30):
        return await anyio.to_thread.run_sync(fn)


SERVICES = ["helloworld.Greeter", "sofamesh.test.Echo"]


async def test_unary_and_server_streaming_helloworld(peers: Peers, grpcio_server: int) -> None:
    async with mesh(grpcio_server, SERVICES) as out:

        def calls() -> tuple[Any, Any, list[str]]:
            with channel(out) as ch:
                stub = peers.greeter(ch)
                reply, call = stub.SayHello.with_call(peers.hw.HelloRequest(name="a"), timeout=5)
                stream = [m.message for m in stub.SayHelloStream(peers.hw.HelloRequest(name="b"))]
                return reply, call, stream

        reply, call, stream = await in_thread(calls)
        assert reply.message == "Hello a from grpcio"
        left = float(dict(call.trailing_metadata())["x-left"])
        assert 3.0 < left <= 5.0  # grpc-timeout reached the provider, less the hops
        assert stream == [f"Hello b #{i} from grpcio" for i in range(3)]


async def test_client_streaming_and_bidi_ping_pong(peers: Peers, grpcio_server: int) -> None:
    Msg = peers.echo.Msg
    async with mesh(grpcio_server, SERVICES) as out:

        def calls() -> tuple[Any, list[str]]:
            with channel(out) as ch:
                stub = peers.echo_stub(ch)
                joined = stub.ClientStream(iter([Msg(text=t) for t in "abc"]), timeout=5)
                # Each request waits for the previous reply: a proxy that buffered a
                # direction until its end would deadlock here.
                outbox: list[Any] = []
                ready = __import__("threading").Semaphore(0)

                def requests() -> Any:
                    for t in ("x", "y", "z"):
                        yield Msg(text=t)
                        ready.acquire()

                replies = []
                for reply in stub.Bidi(requests(), timeout=5):
                    replies.append(reply.text)
                    ready.release()
                del outbox
                return joined, replies

        joined, replies = await in_thread(calls)
        assert (joined.text, joined.count) == ("a+b+c", 3)
        assert replies == ["re:x", "re:y", "re:z"]


async def test_four_megabyte_messages_both_ways(peers: Peers, grpcio_server: int) -> None:
    blob = bytes(range(256)) * (4 * 4096)  # 4 MiB
    async with mesh(grpcio_server, SERVICES) as out:

        def call() -> Any:
            with channel(out) as ch:
                return peers.echo_stub(ch).Unary(peers.echo.Msg(text="big", blob=blob), timeout=20)

        reply = await in_thread(call)
        assert reply.blob == blob


async def test_hundred_concurrent_streams(peers: Peers, grpcio_server: int) -> None:
    async with mesh(grpcio_server, SERVICES) as out:

        def calls() -> list[str]:
            with channel(out) as ch:
                stub = peers.echo_stub(ch)
                futs = [
                    stub.Unary.future(peers.echo.Msg(text=str(i)), timeout=20) for i in range(100)
                ]
                return [f.result().text for f in futs]

        assert await in_thread(calls) == [f"echo:{i}" for i in range(100)]


async def test_provider_status_message_and_trailers_pass_through(
    peers: Peers, grpcio_server: int
) -> None:
    async with mesh(grpcio_server, SERVICES) as out:

        def call() -> grpc.RpcError:
            with channel(out) as ch, pytest.raises(grpc.RpcError) as exc:
                peers.echo_stub(ch).Unary(peers.echo.Msg(text="nope: é", code=5), timeout=5)
            return exc.value

        err = await in_thread(call)
        assert err.code() is grpc.StatusCode.NOT_FOUND
        assert err.details() == "nope: é"
        assert ("x-why", "asked") in err.trailing_metadata()


async def test_deadline_expiring_mid_stream(peers: Peers, grpcio_server: int) -> None:
    async with mesh(grpcio_server, SERVICES) as out:

        def call() -> tuple[list[str], grpc.RpcError]:
            got = []
            with channel(out) as ch, pytest.raises(grpc.RpcError) as exc:
                msg = peers.echo.Msg(text="s", count=5, hang=True)
                for m in peers.echo_stub(ch).ServerStream(msg, timeout=1.0):
                    got.append(m.text)
            return got, exc.value

        got, err = await in_thread(call)
        assert got == ["s#0"]  # the first message streamed through before the deadline
        assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_no_endpoint_is_unavailable(peers: Peers, grpcio_server: int) -> None:
    async with mesh(grpcio_server, ["helloworld.Greeter"]) as out:

        def call() -> grpc.RpcError:
            with channel(out) as ch, pytest.raises(grpc.RpcError) as exc:
                peers.echo_stub(ch).Unary(peers.echo.Msg(text="x"), timeout=5)
            return exc.value

        err = await in_thread(call)
        assert err.code() is grpc.StatusCode.UNAVAILABLE
        assert "sofamesh.test.Echo" in err.details()


async def test_a_provider_resetting_a_stream_spares_its_neighbours(peers: Peers) -> None:
    """The upstream is a raw HTTP/2 server that resets one kind of call and echoes others."""

    async def upstream(stream: H2Stream) -> None:
        assert stream.headers is not None
        if (b":path", b"/sofamesh.test.Echo/ServerStream") in stream.headers:
            stream.reset(0x2)  # INTERNAL_ERROR
            return
        body = b""
        while (chunk := await stream.receive_data()) is not None:
            body += chunk
        await stream.send_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
        await stream.send_data(body)
        await stream.send_trailers([(b"grpc-status", b"0")])

    server = H2Server(upstream)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        async with mesh(port, ["sofamesh.test.Echo"]) as out:

            def calls() -> tuple[grpc.RpcError, list[str]]:
                with channel(out) as ch:
                    stub = peers.echo_stub(ch)
                    futs = [
                        stub.Unary.future(peers.echo.Msg(text=str(i)), timeout=5) for i in range(5)
                    ]
                    with pytest.raises(grpc.RpcError) as exc:
                        list(stub.ServerStream(peers.echo.Msg(text="r", count=2), timeout=5))
                    return exc.value, [f.result().text for f in futs]

            err, others = await in_thread(calls)
        tg.cancel_scope.cancel()
    assert err.code() is grpc.StatusCode.INTERNAL  # RST_STREAM INTERNAL_ERROR, as grpc maps it
    assert others == [str(i) for i in range(5)]  # the raw upstream echoes the request bytes


async def test_a_request_kept_for_a_retry_counts_in_the_buffer_budget(
    peers: Peers, grpcio_server: int
) -> None:
    """Each sidecar keeps a streamed request's first chunks so that a retry can send them
    again: they count against the buffer budget while kept, go as soon as the caller saw a
    response (no retry can follow it), and the budget is back where it was after the call."""
    Msg = peers.echo.Msg
    blob = b"k" * (256 * 1024)
    before = OVERLOAD.held
    sent, go_on = threading.Event(), threading.Event()
    async with mesh(grpcio_server, SERVICES) as out:

        def client_stream() -> Any:
            def requests() -> Any:
                yield from (Msg(text=t, blob=blob) for t in "abc")
                sent.set()
                go_on.wait(20)

            with channel(out) as ch:
                return peers.echo_stub(ch).ClientStream(requests(), timeout=30)

        def bidi() -> list[str]:
            def requests() -> Any:
                yield Msg(text="x", blob=blob)
                go_on.wait(20)

            with channel(out) as ch:
                replies = []
                for reply in peers.echo_stub(ch).Bidi(requests(), timeout=30):
                    replies.append(reply.text)
                    sent.set()
                return replies

        async def all_kept() -> bool:  # no answer yet: each sidecar keeps the three
            return sent.is_set() and OVERLOAD.held - before >= 3 * len(blob)

        async def answered() -> bool:
            return sent.is_set()

        async def let_go() -> bool:
            return OVERLOAD.held - before < len(blob)

        async with anyio.create_task_group() as tg:
            tg.start_soon(in_thread, client_stream)
            await poll_until(all_kept, 10)
            go_on.set()
        assert OVERLOAD.held == before
        sent.clear()
        go_on.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(in_thread, bidi)
            await poll_until(answered, 10)
            await poll_until(let_go, 10)  # the first reply came: nothing is kept any more
            go_on.set()
        assert OVERLOAD.held == before
