"""Large HTTP bodies over HTTP/2: streamed from an upstream stream, and streamed to a client."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx
import pytest

from sofamesh.codecs.h2 import H2Limits
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.protocols.h2.bodies import UpstreamBody
from sofamesh.protocols.h2.client import H2Pool
from sofamesh.protocols.h2.http import H2HttpHandler, send_http
from sofamesh.protocols.h2.server import H2Server
from sofamesh.transport.budget import OVERLOAD
from sofamesh.transport.errors import UpstreamResetError

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024
BODY = hashlib.sha256(b"bodies").digest() * (3 * MIB // 32)  # 3 MiB, no byte repeated in place


async def app(req: HttpRequest) -> HttpResponse:
    status = 503 if req.target == "/fail" else 200
    return HttpResponse(status, [(b"content-type", b"application/octet-stream")], BODY)


class Pieces:
    """A streamed body of `pieces`, then `error` (if any) instead of its end."""

    def __init__(self, pieces: list[bytes], error: Exception | None = None) -> None:
        self.pieces = pieces
        self.error = error
        self.length = None if error else sum(map(len, pieces))
        self.closed = False

    async def receive(self) -> bytes:
        if self.pieces:
            return self.pieces.pop(0)
        if self.error is not None:
            raise self.error
        return b""

    async def aclose(self) -> None:
        self.closed = True


@asynccontextmanager
async def serving(server: H2Server) -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


def get(path: str, threshold: int) -> HttpRequest:
    return HttpRequest("GET", path, [(b"host", b"t")], stream_threshold=threshold)


async def test_a_response_above_the_threshold_streams_from_the_upstream(anyio_backend: str) -> None:
    async with serving(H2Server(H2HttpHandler(app, MIB))) as port, H2Pool() as pool:
        resp = await send_http(pool, "127.0.0.1", port, get("/", MIB), 16 * MIB)
        assert isinstance(resp.stream, UpstreamBody) and resp.stream.length == len(BODY)
        assert resp.body == b""
        pieces = []
        while piece := await resp.stream.receive():
            pieces.append(piece)
        assert b"".join(pieces) == BODY
        # Under the threshold, and 5xx whatever their size (a retry discards them), buffered.
        small = await send_http(pool, "127.0.0.1", port, get("/", 4 * MIB), 16 * MIB)
        failed = await send_http(pool, "127.0.0.1", port, get("/fail", MIB), 16 * MIB)
        assert small.stream is None and small.body == BODY
        assert failed.stream is None and failed.status == 503 and failed.body == BODY
        assert pool.statistics().streams == 0  # every stream let go, the streamed one too


async def test_a_streamed_body_closed_early_resets_its_upstream_stream(anyio_backend: str) -> None:
    async with serving(H2Server(H2HttpHandler(app, MIB))) as port, H2Pool() as pool:
        resp = await send_http(pool, "127.0.0.1", port, get("/", MIB), 16 * MIB)
        assert resp.stream is not None
        assert await resp.stream.receive()
        await resp.stream.aclose()
        assert pool.statistics().streams == 0
        again = await send_http(pool, "127.0.0.1", port, get("/", 4 * MIB), 16 * MIB)
        assert again.body == BODY  # the connection carries on


async def test_a_streamed_response_reaches_the_client_whole(anyio_backend: str) -> None:
    body = Pieces([BODY[i : i + 65536] for i in range(0, len(BODY), 65536)])

    async def handler(req: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [(b"content-type", b"application/octet-stream")], stream=body)

    server = H2Server(H2HttpHandler(handler, MIB))
    async with serving(server) as port, httpx.AsyncClient(http1=False, http2=True) as client:
        r = await client.get(f"http://127.0.0.1:{port}/")
    assert r.status_code == 200 and r.headers["content-length"] == str(len(BODY))
    assert r.content == BODY and body.closed


async def test_a_body_whose_source_fails_is_cut_with_a_reset(anyio_backend: str) -> None:
    bodies: list[Pieces] = []

    async def handler(req: HttpRequest) -> HttpResponse:
        cut = UpstreamResetError("the upstream went away") if req.target == "/cut" else None
        bodies.append(Pieces([b"a" * 1000, b"b" * 1000], cut))
        return HttpResponse(200, [], stream=bodies[-1])

    server = H2Server(H2HttpHandler(handler, MIB))
    async with serving(server) as port, httpx.AsyncClient(http1=False, http2=True) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="error_code:2"):  # INTERNAL_ERROR
            await client.get(f"http://127.0.0.1:{port}/cut")
        ok = await client.get(f"http://127.0.0.1:{port}/")  # the connection lives on
    assert ok.content == b"a" * 1000 + b"b" * 1000
    assert all(body.closed for body in bodies)


async def test_a_request_body_counts_in_the_buffer_budget_while_it_is_held(
    anyio_backend: str,
) -> None:
    """An upload's bytes count against the process's buffer budget as they arrive (a slow
    upload holds it too, as over HTTP/1.1), the overload action sees its stream among the
    holders, and the bytes leave the budget with the exchange."""
    before = OVERLOAD.held
    seen: list[int] = []

    async def sized(req: HttpRequest) -> HttpResponse:
        seen.append(OVERLOAD.held - before)
        return HttpResponse(200, [], str(len(req.body)).encode())

    window = 65_535  # the server lets this much arrive unread, per stream and in all
    server = H2Server(H2HttpHandler(sized, 4 * MIB), limits=H2Limits(connection_window=window))
    async with serving(server) as port, H2Pool() as pool:
        head = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"t"),
        ]
        stream = await pool.open_stream("127.0.0.1", port, head)
        await stream.send_data(b"x" * MIB)  # returns once the server's window let it all go
        assert OVERLOAD.held - before >= MIB - window  # read by the server: held, counted
        held = [size for size, who, _reset in OVERLOAD.holders() if "stream" in who]
        assert held and held[0] >= MIB - window
        await stream.send_data(b"y" * MIB, end_stream=True)
        await stream.receive_headers()
        assert await read_body(stream) == str(2 * MIB).encode()
        assert seen == [2 * MIB]  # the whole body, while the app ran
        stream.conn.finished(stream)
    assert OVERLOAD.held == before  # given back with the exchange


async def read_body(stream: object) -> bytes:
    parts = []
    while (chunk := await stream.receive_data()) is not None:  # type: ignore[attr-defined]
        parts.append(chunk)
    return b"".join(parts)
