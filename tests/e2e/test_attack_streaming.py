"""Large HTTP/1.1 bodies through a real sidecar process: streamed, with bounded memory.

A body above `limits.stream_threshold_bytes` (1 MiB here by default) is relayed as it
arrives, one piece in flight, read from its source only while the receiver keeps up; a
source that dies mid-body leaves the receiver a body it can tell is cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from tests.e2e.attack_apps import (
    BIG,
    BIG_BODY,
    BIG_SUM,
    MIB,
    SERVICE,
    app_server,
    provider,
    rss_mib,
    split,
)

from sofamesh.codecs.http1 import DEFAULT_LIMITS, Http1Limits, HttpRequest, HttpResponse
from sofamesh.testing.plugin import SidecarFactory
from sofamesh.transport.budget import Overload

pytestmark = pytest.mark.anyio


async def big_app(req: HttpRequest, _conn: object) -> HttpResponse:
    return HttpResponse(200, [(b"content-type", b"application/octet-stream")], BIG_BODY)


@asynccontextmanager
async def served(handler: Any, limits: Http1Limits = DEFAULT_LIMITS) -> AsyncIterator[int]:
    # The app holds 30 whole answers while the sidecar reads them slowly: a budget of its own.
    async with app_server(handler, limits=limits, overload=Overload(limit=1 << 40)) as port:
        yield port


@asynccontextmanager
async def raw_upstream(
    handle: Any,
) -> AsyncIterator[int]:
    """A hand-written app: `handle(stream)` answers each connection after its request head."""

    async def accept(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            await handle(stream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, accept)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def open_request(stack: AsyncExitStack, address: str) -> anyio.abc.SocketStream:
    """A GET of the big body whose response head has been read, and nothing more."""
    ip, port = split(address)
    sock = await stack.enter_async_context(await anyio.connect_tcp(ip, port))
    await sock.send(f"GET /big HTTP/1.1\r\nhost: {SERVICE}\r\n\r\n".encode())
    with anyio.fail_after(10):
        first = await sock.receive(4096)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n"), first[:200]
    head, _, rest = first.partition(b"\r\n\r\n")
    assert b"content-length: %d" % BIG in head.lower(), head
    sock.first = rest  # type: ignore[attr-defined]
    return sock


async def read_body(sock: anyio.abc.SocketStream, into: dict[int, str], i: int) -> None:
    digest, got = hashlib.sha256(sock.first), len(sock.first)  # type: ignore[attr-defined]
    with anyio.fail_after(60):
        while got < BIG:
            piece = await sock.receive(1 << 20)
            digest.update(piece)
            got += len(piece)
    into[i] = digest.hexdigest() if got == BIG else f"{got} bytes"


async def test_slow_readers_of_a_large_body_get_it_whole_in_bounded_memory(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any
) -> None:
    """30 clients ask for 10 MiB each and stop reading after the head: the sidecar holds
    a piece per exchange rather than 30 x 10 MiB, nobody is shed, and once they read on
    each gets the whole body, byte for byte."""
    async with served(big_app) as port:
        sidecar = await provider(sofamesh_sidecar, "http", port)
        address = sidecar.inbound_address()
        before = rss_mib(sidecar.pid)
        async with AsyncExitStack() as stack:
            socks = [await open_request(stack, address) for _ in range(30)]
            during = rss_mib(sidecar.pid)
            sums: dict[int, str] = {}
            async with anyio.create_task_group() as tg:
                for i, sock in enumerate(socks):
                    tg.start_soon(read_body, sock, sums, i)
        after = rss_mib(sidecar.pid)
    assert sums == dict.fromkeys(range(30), BIG_SUM)
    # Buffered, this took 20 MiB a reader (600 MiB); streamed, a few 64 KiB pieces each.
    assert during - before < 60 and after - before < 60, (before, during, after)
    assert "over the buffer budget" not in sidecar.log()


def chunked_piece(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


HEADS = {
    "chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    "length": b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (3 * MIB),
}


def framed(framing: str, data: bytes) -> bytes:
    return chunked_piece(data) if framing == "chunked" else data


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_slow_upstream_is_forwarded_piece_by_piece(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any, framing: str
) -> None:
    """The app sends 2 MiB, then waits until the client has seen body bytes before it
    produces the last MiB: the client gets the first bytes before the last exist."""
    first_seen = anyio.Event()
    first, last = BIG_BODY[: 2 * MIB], BIG_BODY[2 * MIB : 3 * MIB]

    async def slow(stream: anyio.abc.SocketStream) -> None:
        await stream.send(HEADS[framing] + framed(framing, first))
        await first_seen.wait()
        await stream.send(framed(framing, last) + (b"0\r\n\r\n" if framing == "chunked" else b""))

    async with raw_upstream(slow) as port:
        sidecar = await provider(sofamesh_sidecar, "http", port)
        url = f"http://{sidecar.inbound_address()}/"
        received = b""
        client = httpx.AsyncClient(headers={"host": SERVICE}, timeout=20)
        async with client, client.stream("GET", url) as response:
            assert response.status_code == 200
            async for piece in response.aiter_raw():
                received += piece
                first_seen.set()
    assert hashlib.sha256(received).digest() == hashlib.sha256(first + last).digest()


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_an_upstream_that_dies_mid_body_leaves_a_cut_body(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any, framing: str
) -> None:
    """The app sends 2 MiB of a longer body and closes: the client's connection closes
    before the body ends (a missing last chunk, or bytes short of the length), and the
    sidecar keeps serving."""

    async def dies(stream: anyio.abc.SocketStream) -> None:
        await stream.send(HEADS[framing] + framed(framing, BIG_BODY[: 2 * MIB]))

    async with raw_upstream(dies) as port:
        sidecar = await provider(sofamesh_sidecar, "http", port)
        url = f"http://{sidecar.inbound_address()}/"
        async with httpx.AsyncClient(headers={"host": SERVICE}, timeout=20) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream("GET", url) as response:
                    assert response.status_code == 200
                    async for _ in response.aiter_raw():
                        pass
    assert "closing the connection mid-body" in sidecar.log()


UPLOAD = 50 * MIB


async def digest_app(req: HttpRequest, _conn: object) -> HttpResponse:
    """The app takes the whole upload (buffered: it is the test's) and answers its SHA-256."""
    return HttpResponse(200, [], hashlib.sha256(req.body).hexdigest().encode())


async def upload_pieces() -> AsyncIterator[bytes]:
    for i in range(UPLOAD // MIB):
        yield BIG_BODY[i % 10 * MIB : (i % 10 + 1) * MIB]


async def peak_rss(pid: int, peak: list[float]) -> None:
    """Sample the sidecar's RSS until cancelled; the highest seen lands in `peak`."""
    while True:
        peak[0] = max(peak[0], rss_mib(pid))
        await anyio.sleep(0.01)


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_large_upload_arrives_whole_in_bounded_memory(
    sofamesh_sidecar: SidecarFactory, anyio_backend: Any, framing: str
) -> None:
    """50 MiB up through the sidecar, chunked or with a Content-Length: the app gets every
    byte in order, and the sidecar never holds more than a few pieces of it."""
    expected = hashlib.sha256()
    async for piece in upload_pieces():
        expected.update(piece)
    limits = Http1Limits(max_body_size=2 * UPLOAD)
    async with served(digest_app, limits) as port:
        sidecar = await provider(sofamesh_sidecar, "http", port)
        url = f"http://{sidecar.inbound_address()}/upload"
        headers = {"host": SERVICE}
        if framing == "length":
            headers["content-length"] = str(UPLOAD)
        before, peak = rss_mib(sidecar.pid), [0.0]
        client = httpx.AsyncClient(headers=headers, timeout=60)
        async with client, anyio.create_task_group() as tg:
            tg.start_soon(peak_rss, sidecar.pid, peak)
            response = await client.post(url, content=upload_pieces())
            tg.cancel_scope.cancel()
    assert (response.status_code, response.text) == (200, expected.hexdigest())
    assert peak[0] - before < 30, (before, peak)  # buffered, it held the 50 MiB at least
