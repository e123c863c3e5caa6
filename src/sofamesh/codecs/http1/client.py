"""The client side of HTTP/1.1: requests to bytes, bytes in, one `HttpResponse` out.

Theory of operation. One request is outstanding at a time (the pool never
pipelines). `encode_request` serialises it with `writer`, then tells a fresh
h11 client connection which method was sent: reading a response depends on
it (a HEAD response has no body, RFC 9112 §6.3) and on h11 being in the state
where 1xx interim responses are legal. Sending a stand-in request with that
method through h11 does both, and costs about a third of having h11 write the
real request (its header validation is the expensive part, and `writer` has
already done it). The stand-in bytes go nowhere, and its end of message is
never sent: only the server side of h11's state machine matters for reading.

    encode_request(HttpRequest) -> bytes ──► peer ──► receive_data(bytes)
                                                        -> HttpResponse | None

Streaming. A request with a `stream` is encoded as its head alone, framed
by the stream's length or chunked (`upload_framing`); its caller sends the
body's pieces. A request whose `stream_threshold` is set lets its response
body stream: once the head is read and the body is known to exceed the
threshold (its Content-Length, or the bytes of a chunked or close-delimited
body so far), `receive_data` returns the head with `streaming` true and an
empty body, and `body_data` hands out the rest as it arrives. Such a body is
not bounded by `max_body_size`, and its connection is not reused.

The connection is `reusable` after a complete response unless either side
said "Connection: close", the server spoke HTTP/1.0, the body ran to EOF, or
the server sent bytes nobody asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sofamesh.codecs.http1 import fast, relayed, strict, writer
from sofamesh.codecs.http1.errors import HttpIncompleteMessage, HttpProtocolError
from sofamesh.codecs.http1.limits import DEFAULT_LIMITS, Http1Limits
from sofamesh.codecs.http1.messages import HttpRequest, HttpResponse, drop_connection_options
from sofamesh.lazy_imports import lazy_module

if TYPE_CHECKING:
    import h11
else:  # the reference parser: imported with the first response the fast path hands it
    h11 = lazy_module("h11")

_STAND_IN_HOST = [(b"host", b"stand-in")]
_COMMON = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS")
# Events are immutable, so the common methods share one stand-in each (made with the first).
_STAND_INS: dict[bytes, h11.Request] = {}


def _stand_in(method: bytes) -> h11.Request:
    stand_in = _STAND_INS.get(method)
    if stand_in is None:
        stand_in = h11.Request(method=method, target=b"/", headers=_STAND_IN_HOST)
        if method in _COMMON:
            _STAND_INS[method] = stand_in
    return stand_in


class Http1ClientCodec:
    """One client connection's HTTP/1.1 state; sans-IO (no sockets, no clock)."""

    __slots__ = (
        "_body",
        "_body_size",
        "_buf",
        "_check",
        "_close",
        "_head",
        "_headers",
        "_limits",
        "_method",
        "_outstanding",
        "_parser",
        "_response",
        "_started",
        "_stream_above",
        "stream_length",
        "streaming",
        "upload_framing",
    )

    def __init__(self, limits: Http1Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._parser: h11.Connection | None = None  # set once h11 reads the response
        self._outstanding = False  # a request was sent and its response is not complete
        self._method = b""  # of the outstanding request
        self._buf = b""  # response bytes the fast path has not placed yet
        self._check = relayed.ResponseCheck()  # the field lines of responses relayed as bytes
        self._head = b""  # h11's response as received, until its head is read (`strict.py`)
        self._response: h11.Response | None = None  # head read, body still coming
        self._headers: list[tuple[bytes, bytes]] = []  # of _response, lowercased
        self._body: list[bytes | bytearray] = []
        self._body_size = 0
        self._started = False  # a byte of the response arrived
        self._close = False  # this connection will not carry another request
        self._stream_above = 0  # the outstanding request's stream threshold (0: buffer)
        self.streaming = False  # the response's head is out and its body is being streamed
        self.stream_length: int | None = None  # that body's Content-Length, if it has one
        self.upload_framing = writer.RAW  # of a streamed request body (`writer.CHUNKED`)

    def encode_request(self, request: HttpRequest, *, host: bytes | None = None) -> bytes:
        """Bytes of `request`; `host` is the Host header to add if it has none.

        Raises ValueError for an invalid request (nothing is sent), and
        RuntimeError while a response is outstanding or after the connection
        became unusable.
        """
        if self._outstanding or self._close:
            raise RuntimeError("connection is busy or closed")
        if request.stream is None:
            data, self._close = writer.encode_request(request, host=host)
        else:  # only the head: the caller sends the body's pieces, framed as `upload_framing`
            data, self._close, self.upload_framing = writer.encode_streamed_request(
                request, host=host
            )
        self._method = request.method.encode("latin-1")
        self._stream_above = request.stream_threshold
        self._outstanding = True
        self._started = False
        return data

    def _h11_parser(self) -> h11.Connection:
        """Hand the response to h11 from its first byte (the fast path declined it)."""
        parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._limits.max_header_bytes)
        # The stand-in's end of message is never sent: reading the response
        # needs only the server side of h11's state machine to expect it.
        method = self._method
        parser.send_with_data_passthrough(_stand_in(method))
        buf, self._buf = self._buf, b""
        self._head = buf
        if buf:
            parser.receive_data(buf)
        self._parser = parser
        return parser

    def _fast(self, data: bytes) -> HttpResponse | None:
        """A plain response read without h11; None when h11 must read it."""
        self._buf += data
        if self._method == b"HEAD":
            return None
        relay = relayed.split_response(self._buf, self._limits, self._check)
        response: HttpResponse
        if relay is not None:  # its fields parsed only if something reads them
            response, close, used = relay
        else:
            parsed = fast.split_response(self._buf, self._limits)
            if isinstance(parsed, str):
                return None
            status, reason, headers, body, close, used = parsed
            response = HttpResponse(status, headers, body, reason)
        if close or used < len(self._buf):  # bytes nobody asked for: out of step
            self._close = True
        self._buf = b""
        self._outstanding = False
        return response

    def receive_data(self, data: bytes) -> HttpResponse | None:
        """Feed bytes (`b""` at EOF); returns the response once it is complete.

        Raises `HttpProtocolError` (status 502) for a malformed or oversized
        response and `HttpIncompleteMessage` when the peer closed mid-response.
        """
        if not self._outstanding:
            raise RuntimeError("no request is outstanding")
        if data:
            self._started = True
        else:
            self._close = True  # the peer is gone, whatever the response says
        parser = self._parser
        if parser is None and data:
            response = self._fast(data)
            if response is not None:
                return response
            parser = self._h11_parser()  # it has the buffered bytes, `data` included
        else:
            if parser is None:
                parser = self._h11_parser()
            elif self._response is None:
                self._head += data
            parser.receive_data(data)
        try:
            return self._parse(parser)
        except h11.RemoteProtocolError as exc:
            self._fail()
            if not data:  # everything before EOF parsed: the EOF cut the message
                raise HttpIncompleteMessage(502, f"upstream closed mid-response: {exc}") from None
            raise HttpProtocolError(502, f"malformed upstream response: {exc}") from None
        except HttpProtocolError:
            self._fail()
            raise

    def _parse(self, parser: h11.Connection) -> HttpResponse | None:
        while True:
            event = parser.next_event()
            kind = type(event)
            if kind is h11.Data:
                self._add_body(event.data)  # type: ignore[union-attr]
                if self.streaming:
                    return self._streamed_head()
            elif kind is h11.Response:
                self._start(event)  # type: ignore[arg-type]
                if self.streaming:
                    return self._streamed_head()
            elif kind is h11.EndOfMessage:
                return self._finish(parser)
            elif kind is h11.InformationalResponse:
                # 1xx (100 Continue, 103 Early Hints): checked, and the final one follows
                end = strict.head_end(self._head)
                strict.check_response_head(self._head[:end])
                self._head = self._head[end:]
            else:  # NEED_DATA; ConnectionClosed only comes after EOM
                return None

    def _start(self, response: h11.Response) -> None:
        head, self._head = self._head, b""
        strict.check_response_head(head)
        limits = self._limits
        self._headers = headers = [(k.lower(), v) for k, v in response.headers.raw_items()]
        if len(headers) > limits.max_headers:
            raise HttpProtocolError(502, f"upstream sent over {limits.max_headers} header fields")
        size = len(response.reason) + 16  # see H11Requests._start (server_h11.py)
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length" and self._streams(response.status_code, int(value)):
                self.streaming, self.stream_length = True, int(value)
            elif name == b"content-length" and int(value) > limits.max_body_size:
                raise HttpProtocolError(502, f"upstream body over {limits.max_body_size} bytes")
        if size > limits.max_header_bytes:
            raise HttpProtocolError(502, f"upstream head over {limits.max_header_bytes} bytes")
        self._response = response

    def _streams(self, status: int, size: int) -> bool:
        """Whether a body of `size` bytes streams (a HEAD, 204 or 304 response has none)."""
        above = self._stream_above
        return 0 < above < size and status not in (204, 304) and self._method != b"HEAD"

    def _add_body(self, chunk: bytearray) -> None:
        self._body_size += len(chunk)
        if not self.streaming and self._stream_above and self._body_size > self._stream_above:
            # chunked or close-delimited, past the threshold
            self.streaming, self.stream_length = True, None
        elif self._body_size > self._limits.max_body_size and not self.streaming:
            raise HttpProtocolError(502, f"upstream body over {self._limits.max_body_size} bytes")
        self._body.append(chunk)

    def _finish(self, parser: h11.Connection) -> HttpResponse:
        response, self._response = self._response, None
        assert response is not None
        self._headers = drop_connection_options(self._headers)  # the fast path never has any
        body = b"".join(self._body)
        self._body.clear()
        self._body_size = 0
        # MUST_CLOSE/CLOSED: the server said close, spoke HTTP/1.0 or framed
        # the body by EOF; leftover bytes mean it is out of step with us.
        if parser.their_state is not h11.DONE or parser.trailing_data[0]:
            self._close = True
        self._parser = None
        self._outstanding = False
        return HttpResponse(
            response.status_code,
            self._headers,
            body,
            response.reason,
        )

    def _streamed_head(self) -> HttpResponse:
        """The head of a response whose body `body_data` hands out from here on."""
        response = self._response
        assert response is not None
        self._headers = drop_connection_options(self._headers)
        return HttpResponse(response.status_code, self._headers, b"", response.reason)

    def body_data(self, data: bytes | None) -> tuple[bytes, bool]:
        """Feed bytes of a streamed body (`b""` at EOF, None: none new); (body bytes, ended).

        Raises `HttpIncompleteMessage` when the peer closed before the body
        ended and `HttpProtocolError` for malformed framing (both 502).
        """
        parser = self._parser
        if not self.streaming or parser is None:
            raise RuntimeError("no response body is streaming")
        if data is not None:
            if not data:
                self._close = True
            parser.receive_data(data)
        try:
            ended = self._next_pieces(parser)
        except h11.RemoteProtocolError as exc:
            self._fail()
            if data == b"":
                raise HttpIncompleteMessage(502, f"upstream closed mid-body: {exc}") from None
            raise HttpProtocolError(502, f"malformed upstream body: {exc}") from None
        body = b"".join(self._body)
        self._body.clear()
        if ended:
            self._fail()  # done, and a streamed exchange's connection is not reused
        return body, ended

    def _next_pieces(self, parser: h11.Connection) -> bool:
        """Collect the body pieces h11 has ready; whether the message ended."""
        event = parser.next_event()
        while type(event) is h11.Data:
            self._body.append(event.data)
            event = parser.next_event()
        return type(event) is h11.EndOfMessage  # else NEED_DATA

    def _fail(self) -> None:
        self.streaming = False
        self._close = True
        self._parser = None
        self._outstanding = False

    @property
    def response_started(self) -> bool:
        """Some byte of the outstanding response arrived (a retry is no longer safe)."""
        return self._started

    @property
    def reusable(self) -> bool:
        """No request outstanding and the connection may carry another one."""
        return not self._outstanding and not self._close
