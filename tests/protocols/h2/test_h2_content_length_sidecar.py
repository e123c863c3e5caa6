"""A request whose DATA passes its content-length, through a sidecar (RFC 9113 §8.1.1).

A raw HTTP/2 client opens two streams on one connection to the sidecar's
inbound gRPC listener: one declares `content-length: 10` and sends 20 octets,
the other is a well-formed unary call. The first gets RST_STREAM
PROTOCOL_ERROR and never reaches the upstream; the second is served. When
the headers went ahead alone and the call began, the excess cancels it
upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from sofamesh.codecs.grpc import encode_message
from sofamesh.codecs.h2 import (
    CANCEL,
    PROTOCOL_ERROR,
    DataReceived,
    Event,
    LeanH2Codec,
    StreamReset,
    TrailersReceived,
)
from sofamesh.config import Address, load_config
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.h2.stream import H2Stream, StreamResetError
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio

SERVICE = "sofamesh.test.Echo"


def call(path: str, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"echo"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        *extra,
    ]


@asynccontextmanager
async def sidecar_before(upstream: int) -> AsyncIterator[Address]:
    """A sidecar whose inbound gRPC listener carries calls to `upstream`; yields its address."""
    config = {
        "app": "prov",
        "registry": "memory://",
        "inbound": [
            {
                "protocol": "grpc",
                "listen": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{upstream}",
                "services": [SERVICE],
            }
        ],
    }
    sidecar = Sidecar(load_config(config, env={}))
    async with anyio.create_task_group() as tg:
        await tg.start(sidecar.run)
        yield sidecar.bound["inbound[0]"]
        sidecar.stop()


async def exchange(address: Address, codec: LeanH2Codec, until: int) -> list[Event]:
    """Send what `codec` queued and read until the peer ended or reset `until` streams."""
    events: list[Event] = []
    async with await anyio.connect_tcp(address.host, address.port) as sock:
        await sock.send(codec.data_to_send())
        with anyio.fail_after(10):
            while sum(type(ev) in (StreamReset, TrailersReceived) for ev in events) < until:
                events += codec.receive_data(await sock.receive())
                if out := codec.data_to_send():
                    await sock.send(out)
    return events


async def test_data_past_the_content_length_is_reset_and_never_reaches_the_upstream() -> None:
    seen: list[bytes] = []

    async def upstream(stream: H2Stream) -> None:
        assert stream.headers is not None
        seen.append(dict(stream.headers)[b":path"])
        body = b""
        while (chunk := await stream.receive_data()) is not None:
            body += chunk
        await stream.send_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
        await stream.send_data(body)
        await stream.send_trailers([(b"grpc-status", b"0")])

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(H2Server(upstream).serve, listener)
        async with sidecar_before(port) as address:
            client = LeanH2Codec(client_side=True)
            client.initiate()
            client.send_headers(1, call(f"/{SERVICE}/Liar", [(b"content-length", b"10")]))
            client.send_data(1, b"x" * 20, end_stream=True)
            message = encode_message(b"hello")
            length = str(len(message)).encode()
            client.send_headers(3, call(f"/{SERVICE}/Unary", [(b"content-length", length)]))
            client.send_data(3, message, end_stream=True)
            events = await exchange(address, client, until=2)
        tg.cancel_scope.cancel()
    on_1 = [ev for ev in events if getattr(ev, "stream_id", 0) == 1]
    assert on_1 == [StreamReset(stream_id=1, error_code=PROTOCOL_ERROR, remote=True)]
    served = b"".join(ev.data for ev in events if isinstance(ev, DataReceived))
    assert served == message
    (trailers,) = [ev for ev in events if isinstance(ev, TrailersReceived)]
    assert trailers.stream_id == 3 and (b"grpc-status", b"0") in trailers.headers
    assert seen == [f"/{SERVICE}/Unary".encode()]


async def test_data_past_the_content_length_after_the_call_began_cancels_it_upstream() -> None:
    """The headers went ahead on their own, so the call is under way when the excess arrives:
    the client's stream is reset PROTOCOL_ERROR and the upstream's is cancelled."""
    began, ended = anyio.Event(), anyio.Event()
    outcome: list[str] = []

    async def upstream(stream: H2Stream) -> None:
        began.set()
        try:
            while await stream.receive_data() is not None:
                pass
            outcome.append("whole body")
        except StreamResetError as exc:
            outcome.append(f"reset {exc.error_code}")
        finally:
            ended.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        await tg.start(H2Server(upstream).serve, listener)
        async with sidecar_before(port) as address:
            client = LeanH2Codec(client_side=True)
            client.initiate()
            client.send_headers(1, call(f"/{SERVICE}/Unary", [(b"content-length", b"10")]))
            async with await anyio.connect_tcp(address.host, address.port) as sock:
                await sock.send(client.data_to_send())
                with anyio.fail_after(10):
                    await began.wait()
                    client.send_data(1, b"x" * 20, end_stream=True)
                    events = await read_until_reset(sock, client)
                    await ended.wait()
        tg.cancel_scope.cancel()
    assert StreamReset(stream_id=1, error_code=PROTOCOL_ERROR, remote=True) in events
    assert outcome == [f"reset {CANCEL}"]


async def read_until_reset(sock: anyio.abc.ByteStream, codec: LeanH2Codec) -> list[Event]:
    events: list[Event] = []
    await sock.send(codec.data_to_send())
    while not any(type(ev) is StreamReset for ev in events):
        events += codec.receive_data(await sock.receive())
        if out := codec.data_to_send():
            await sock.send(out)
    return events
