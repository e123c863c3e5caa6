"""Plain HTTP over HTTP/2 streams, buffered like HTTP/1.1: the same `HttpRequest`/`HttpResponse`.

- `H2HttpHandler` adapts an HTTP/1.1-style handler (`HttpRequest -> HttpResponse`)
  to an HTTP/2 stream, so the sidecar carries h2c requests exactly as it
  carries HTTP/1.1 ones (`:authority` becomes `Host`, RFC 9113 §8.3.1).
- `send_http` sends an `HttpRequest` over a pooled HTTP/2 connection.

Request bodies are buffered up to `max_body` (413 above it), counted in the buffer budget
while they are held. A response body above the
request's `stream_threshold` is streamed (`bodies.py`); others are buffered up to
`max_body` (`UpstreamProtocolError` above it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from sofamesh.codecs.h2 import RawHeaders
from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.codecs.http1.paths import REJECT_REQUEST, PathError, normalize_target
from sofamesh.protocols.h2.bodies import UpstreamBody, content_length, send_streamed
from sofamesh.protocols.h2.client import H2Pool
from sofamesh.protocols.h2.stream import H2Stream, StreamResetError
from sofamesh.protocols.http.server import handler_for
from sofamesh.transport.budget import OVERLOAD
from sofamesh.transport.errors import UpstreamProtocolError, UpstreamResetError

HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]

# RFC 9113 §8.2.2: never sent in HTTP/2; Host travels as :authority.
_CONNECTION_SPECIFIC = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"te",
    }
)


class H2HttpHandler:
    """Serves HTTP/2 streams with a handler of buffered HTTP messages."""

    def __init__(
        self,
        handler: HttpHandler,
        max_body: int,
        slashes: str = REJECT_REQUEST,
        stream_threshold: int = 0,
    ) -> None:
        self._handler = handler
        self._max_body = max_body
        self._slashes = slashes  # path_with_escaped_slashes_action
        self._threshold = stream_threshold  # a response body above it streams (0: never)

    def __call__(self, stream: H2Stream) -> Coroutine[Any, Any, None]:
        """The stream's coroutine, returned: no frame of its own around the exchange."""
        assert stream.headers is not None
        method, target, headers = _request_head(stream.headers)
        try:  # the path every rule judges and the app receives (codecs/http1/paths.py)
            target = normalize_target(target, self._slashes)
        except PathError as exc:
            refusal = HttpResponse(400, [(b"content-type", b"text/plain")], f"{exc}\n".encode())
            return _send_response(stream, refusal)
        return self._serve(stream, method, target, headers)

    async def _serve(
        self, stream: H2Stream, method: str, target: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            if stream.remote_closed and not stream.chunks:
                body: bytes | None = b""  # a GET's HEADERS ended the stream: nothing to read
            else:
                body = await _read_body(stream, self._max_body)
            if body is None:
                await _send_response(stream, _too_large())
                return
            req = HttpRequest(method, target, headers, body, stream_threshold=self._threshold)
            handler = self._handler
            if stream.conn.identity:  # mutual TLS: the caller is the verified peer
                handler = handler_for(handler, stream.conn.identity)  # type: ignore[arg-type,assignment]
            # The caller's reset cancels the upstream call: the whole handler, through the scope
            # of the worker that runs it (`H2Stream.cancel_handler`), nobody is left to answer.
            stream.on_reset = stream.cancel_handler
            resp = await handler(req)
            stream.on_reset = None
            await _send_response(stream, resp)
        finally:  # the request body's bytes leave the buffer budget with the exchange
            if stream.held:
                OVERLOAD.held -= stream.held
                stream.held = 0


# Request and response heads a connection repeats, split or built once (a client sends the
# same head call after call, an upstream the same response head for a second at least).
_HEADS = 256
_requests: dict[tuple[tuple[bytes, bytes], ...], tuple[str, str, list[tuple[bytes, bytes]]]] = {}
_responses: dict[tuple[int, int, tuple[tuple[bytes, bytes], ...]], RawHeaders] = {}


def _request_head(raw: RawHeaders) -> tuple[str, str, list[tuple[bytes, bytes]]]:
    """The method, target and HTTP/1.1-style fields of a request head (a list of its own)."""
    key = tuple(raw)
    known = _requests.get(key)
    if known is None:
        known = _split_request(raw)
        if len(_requests) >= _HEADS:
            _requests.clear()
        _requests[key] = known
    return known[0], known[1], list(known[2])  # the handler's filters may change its fields


def _split_request(raw: RawHeaders) -> tuple[str, str, list[tuple[bytes, bytes]]]:
    method = target = ""
    headers: list[tuple[bytes, bytes]] = []
    for k, v in raw:
        if k == b":method":
            method = v.decode("latin-1")
        elif k == b":path":
            target = v.decode("latin-1")
        elif k == b":authority":
            headers.insert(0, (b"host", v))
        elif k[:1] != b":":
            headers.append((k, v))
    return method, target or "/", headers


async def _read_body(stream: H2Stream, limit: int) -> bytes | None:
    """The whole body, or None past `limit`. Its bytes count against the buffer budget (and
    in the stream's `held`, so the overload action can reset it) as they arrive, like an
    HTTP/1.1 request's: a slow upload holds the budget too. The handler releases them."""
    parts: list[bytes] = []
    size = 0
    while (chunk := await stream.receive_data()) is not None:
        size += len(chunk)
        if size > limit:
            return None
        OVERLOAD.held += len(chunk)
        stream.held += len(chunk)
        parts.append(chunk)
    return b"".join(parts)


def _too_large() -> HttpResponse:
    return HttpResponse(413, [(b"content-type", b"text/plain")], b"request body too large\n")


def _response_head(status: int, fields: list[tuple[bytes, bytes]], size: int) -> RawHeaders:
    """An HTTP/2 response head: `:status`, the fields HTTP/2 carries, and a content-length of
    `size` unless it is -1. Shared: nobody changes a head once built."""
    key = (status, size, tuple(fields))
    head = _responses.get(key)
    if head is None:
        head = [(b":status", str(status).encode())]
        head += [(k.lower(), v) for k, v in fields if k.lower() not in _CONNECTION_SPECIFIC]
        if size >= 0:
            head.append((b"content-length", str(size).encode()))
        if len(_responses) >= _HEADS:
            _responses.clear()
        _responses[key] = head
    return head


async def _send_response(stream: H2Stream, resp: HttpResponse) -> None:
    if resp.stream is not None:
        try:
            head = list(_response_head(resp.status, resp.headers, -1))  # it adds a length
            await send_streamed(stream, head, resp.stream)
        finally:
            await resp.stream.aclose()
    elif resp.body:
        size = len(resp.body)
        await stream.send_headers(_response_head(resp.status, resp.headers, size))
        OVERLOAD.held += size  # counted against the buffer budget until it has left
        stream.held += size
        try:
            await stream.send_data(resp.body, end_stream=True)
        finally:
            OVERLOAD.held -= size
            stream.held -= size
    else:
        await stream.send_headers(_response_head(resp.status, resp.headers, -1), end_stream=True)


async def send_http(
    pool: H2Pool, host: str, port: int, req: HttpRequest, max_body: int
) -> HttpResponse:
    """One buffered exchange over HTTP/2; transport errors as in `sofamesh.transport.errors`."""
    authority = b""
    fields: RawHeaders = []
    for k, v in req.headers:
        name = k.lower()
        if name == b"host":
            authority = v
        elif name not in _CONNECTION_SPECIFIC and name != b"content-length":
            fields.append((name, v))
    head: RawHeaders = [
        (b":method", req.method.encode()),
        (b":scheme", b"http"),
        (b":path", req.target.encode("latin-1")),
        (b":authority", authority or f"{host}:{port}".encode()),
        *fields,
    ]
    if req.body:
        head.append((b"content-length", str(len(req.body)).encode()))
    up = pool.open_stream_nowait(host, port, head, not req.body)
    if up is None:
        up = await pool.open_stream(host, port, head, not req.body)
    resp: HttpResponse | None = None
    try:
        if req.body:
            await up.send_data(req.body, end_stream=True)
        resp = await _read_response(up, max_body, req.stream_threshold)
        return resp
    except StreamResetError as exc:
        raise UpstreamResetError(str(exc)) from exc
    finally:
        if resp is None or resp.stream is None:  # a streamed body owns the stream
            up.conn.finished(up)


async def _read_response(up: H2Stream, max_body: int, threshold: int) -> HttpResponse:
    """The response, its body buffered or, above `threshold` (0: never), streamed.

    5xx bodies are always buffered: a retry discards the response it replaces, and a
    streamed one would keep its upstream stream open."""
    raw = await up.receive_headers()
    status = int(raw[0][1])
    headers = [(k, v) for k, v in raw if k[:1] != b":"]
    if status >= 500:
        threshold = 0
    length = content_length(headers)
    if threshold and length is not None and length > threshold:
        return HttpResponse(status, headers, stream=UpstreamBody(up, [], length))
    parts: list[bytes] = []
    size = 0
    try:
        while (chunk := await up.receive_data()) is not None:
            size += len(chunk)
            OVERLOAD.held += len(chunk)  # in the buffer budget while it is read, as HTTP/1.1's
            parts.append(chunk)
            if threshold and size > threshold:  # no length given, and large: the rest streams
                return HttpResponse(status, headers, stream=UpstreamBody(up, parts, length))
            if size > max_body:
                raise UpstreamProtocolError(f"response body over the limit of {max_body} bytes")
        return HttpResponse(status, headers, b"".join(parts))
    finally:
        OVERLOAD.held -= size
