"""Bodies above the stream threshold: the codecs hand them out piece by piece, the pool and
server relay them without buffering (sans-IO codec pairs, then real servers on 127.0.0.1)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest
from http1_support import raw_server, read_head, serving

from sofamesh.codecs.http1 import (
    Http1ClientCodec,
    Http1Limits,
    Http1ServerCodec,
    HttpIncompleteMessage,
    HttpRequest,
    HttpResponse,
)
from sofamesh.model import Invocation
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.protocols.http.server import ConnInfo, Http1Server
from sofamesh.sdk.asgi import AsgiTerminal
from sofamesh.transport.errors import UpstreamResetError

STREAMING = Http1Limits(stream_threshold=1000, max_body_size=2000)
BODY = bytes(range(256)) * 40  # 10240 bytes: above the threshold and the body limit


def client_after(request: HttpRequest) -> Http1ClientCodec:
    codec = Http1ClientCodec(STREAMING)
    codec.encode_request(request, host=b"h")
    return codec


def drain(codec: Http1ClientCodec | Http1ServerCodec, data: bytes) -> bytes:
    body, ended = codec.body_data(None)
    for i in range(0, len(data), 1000):
        assert not ended
        piece, ended = codec.body_data(data[i : i + 1000])
        body += piece
    assert ended
    return body


def test_a_response_above_the_threshold_streams_past_the_body_limit() -> None:
    codec = client_after(HttpRequest("GET", "/", stream_threshold=1000))
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(BODY)
    response = codec.receive_data(head + BODY[:10])
    assert response is not None and response.body == b""
    assert (codec.streaming, codec.stream_length) == (True, len(BODY))
    assert drain(codec, BODY[10:]) == BODY  # the first 10 bytes came with the head
    assert not codec.reusable  # a streamed exchange's connection is not reused


def test_a_chunked_response_streams_once_past_the_threshold() -> None:
    codec = client_after(HttpRequest("GET", "/", stream_threshold=1000))
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    assert codec.receive_data(head + b"200\r\n" + BODY[:512] + b"\r\n") is None
    response = codec.receive_data(b"400\r\n" + BODY[512:1536] + b"\r\n")
    assert response is not None and (codec.streaming, codec.stream_length) == (True, None)
    first, ended = codec.body_data(None)
    assert (first, ended) == (BODY[:1536], False)
    assert codec.body_data(b"2\r\nxy\r\n0\r\n\r\n") == (b"xy", True)


@pytest.mark.parametrize(
    ("method", "status", "threshold"), [("HEAD", 200, 1000), ("GET", 304, 1000), ("GET", 200, 0)]
)
def test_no_body_or_no_threshold_means_no_stream(method: str, status: int, threshold: int) -> None:
    codec = client_after(HttpRequest(method, "/", stream_threshold=threshold))
    head = b"HTTP/1.1 %d X\r\ncontent-length: 1500\r\n\r\n" % status
    response = codec.receive_data(
        head + (b"y" * 1500 if method == "GET" and status == 200 else b"")
    )
    assert response is not None and not codec.streaming
    assert response.body == (b"y" * 1500 if threshold == 0 else b"")


def test_a_request_above_the_threshold_streams_and_its_connection_then_closes() -> None:
    codec = Http1ServerCodec(STREAMING)
    codec.receive_data(b"PUT /up HTTP/1.1\r\nhost: h\r\ncontent-length: %d\r\n\r\n" % len(BODY))
    request = codec.next_request()
    assert request is not None and (request.target, request.body) == ("/up", b"")
    assert (codec.streaming, codec.stream_length, request.stream_threshold) == (
        True,
        len(BODY),
        1000,
    )
    assert drain(codec, BODY) == BODY
    codec.encode_response(HttpResponse(200))
    assert codec.must_close


def test_a_streamed_request_cut_short_is_an_incomplete_message() -> None:
    codec = Http1ServerCodec(STREAMING)
    codec.receive_data(b"POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n")
    assert codec.next_request() is None
    codec.receive_data(b"7d0\r\n" + BODY[:2000] + b"\r\n")
    assert codec.next_request() is not None and codec.streaming
    assert codec.body_data(None) == (BODY[:2000], False)
    with pytest.raises(HttpIncompleteMessage):
        codec.body_data(b"")


LARGE = BODY * 40  # 400 KiB: more than one read, so the head arrives before the body


async def big(request: HttpRequest, _conn: ConnInfo) -> HttpResponse:
    return HttpResponse(200, [], LARGE + request.body)


@pytest.mark.anyio
async def test_the_pool_hands_a_streamed_body_over_with_its_connection() -> None:
    """The connection leaves the pool with the body, and closes once the body is read."""
    async with serving(Http1Server(big)) as port, Http1Pool() as pool:
        request = HttpRequest("GET", "/", [], stream_threshold=1000)
        response = await pool.send("127.0.0.1", port, request)
        assert response.stream is not None and response.stream.length == len(LARGE)
        assert pool.statistics().open_connections == 0
        body = b""
        while piece := await response.stream.receive():
            body += piece
        assert body == LARGE
        small = await pool.send("127.0.0.1", port, HttpRequest("GET", "/", []))
        assert (small.stream, small.body) == (None, LARGE)  # no threshold: buffered as before


class Pieces:
    """A BodyStream of fixed pieces that records how far it was read."""

    def __init__(self, pieces: list[bytes], length: int | None) -> None:
        self.pieces, self.length, self.read = list(pieces), length, 0

    async def receive(self) -> bytes:
        if not self.pieces:
            return b""
        self.read += 1
        return self.pieces.pop(0)

    async def aclose(self) -> None:
        self.pieces.clear()


@pytest.mark.anyio
@pytest.mark.parametrize("length", [len(BODY), None])
async def test_the_pool_sends_a_streamed_request_body(length: int | None) -> None:
    body = Pieces([BODY[:4000], BODY[4000:]], length)
    server = Http1Server(big, Http1Limits(max_body_size=1 << 20))
    async with serving(server) as port, Http1Pool() as pool:
        response = await pool.send("127.0.0.1", port, HttpRequest("POST", "/", [], stream=body))
    assert response.body == LARGE + BODY and body.read == 2


@pytest.mark.anyio
async def test_a_streamed_request_on_a_reused_connection_found_closed_is_not_resent() -> None:
    """A keep-alive connection the server closed is retried for a buffered request, but a
    streamed body's pieces are gone: the caller gets the reset."""
    served = anyio.Event()

    async def once(stream: anyio.abc.SocketStream) -> None:
        await read_head(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        served.set()
        await stream.aclose()

    async with raw_server(once) as port, Http1Pool() as pool:
        await pool.send("127.0.0.1", port, HttpRequest("GET", "/", []))
        await served.wait()
        body = Pieces([b"x" * 10], 10)
        with pytest.raises(UpstreamResetError) as caught:
            await pool.send("127.0.0.1", port, HttpRequest("POST", "/", [], stream=body))
        assert type(caught.value) is UpstreamResetError  # not StaleConnection: no retry


@pytest.mark.anyio
async def test_an_asgi_app_receives_a_streamed_body_piece_by_piece() -> None:
    """The SDK's ASGI runner hands a streamed upload over as `more_body` messages."""
    messages: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while not messages or messages[-1]["more_body"]:
            messages.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    body = Pieces([b"a" * 10, b"b" * 5], 15)
    request = HttpRequest("PUT", "/x", [(b"host", b"h")], stream=body)
    result = await AsgiTerminal(app, ("127.0.0.1", 80))(
        Invocation("http", "S", "/x", payload=request)
    )
    assert result.code == 200
    assert [(m["body"], m["more_body"]) for m in messages] == [
        (b"a" * 10, True),
        (b"b" * 5, True),
        (b"", False),
    ]
