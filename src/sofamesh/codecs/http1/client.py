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

The connection is `reusable` after a complete response unless either side
said "Connection: close", the server spoke HTTP/1.0, the body ran to EOF, or
the server sent bytes nobody asked for.
"""

from __future__ import annotations

import h11

from sofamesh.codecs.http1 import fast, strict, writer
from sofamesh.codecs.http1.errors import HttpIncompleteMessage, HttpProtocolError
from sofamesh.codecs.http1.limits import DEFAULT_LIMITS, Http1Limits
from sofamesh.codecs.http1.messages import HttpRequest, HttpResponse, drop_connection_options

_STAND_IN_HOST = [(b"host", b"stand-in")]


def _stand_in(method: bytes) -> h11.Request:
    return h11.Request(method=method, target=b"/", headers=_STAND_IN_HOST)


# Events are immutable, so the common methods share one stand-in each.
_STAND_INS = {
    m: _stand_in(m) for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS")
}


class Http1ClientCodec:
    """One client connection's HTTP/1.1 state; sans-IO (no sockets, no clock)."""

    __slots__ = (
        "_body",
        "_body_size",
        "_buf",
        "_close",
        "_head",
        "_headers",
        "_limits",
        "_method",
        "_outstanding",
        "_parser",
        "_response",
        "_started",
    )

    def __init__(self, limits: Http1Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._parser: h11.Connection | None = None  # set once h11 reads the response
        self._outstanding = False  # a request was sent and its response is not complete
        self._method = b""  # of the outstanding request
        self._buf = b""  # response bytes the fast path has not placed yet
        self._head = b""  # h11's response as received, until its head is read (`strict.py`)
        self._response: h11.Response | None = None  # head read, body still coming
        self._headers: list[tuple[bytes, bytes]] = []  # of _response, lowercased
        self._body: list[bytes | bytearray] = []
        self._body_size = 0
        self._started = False  # a byte of the response arrived
        self._close = False  # this connection will not carry another request

    def encode_request(self, request: HttpRequest, *, host: bytes | None = None) -> bytes:
        """Bytes of `request`; `host` is the Host header to add if it has none.

        Raises ValueError for an invalid request (nothing is sent), and
        RuntimeError while a response is outstanding or after the connection
        became unusable.
        """
        if self._outstanding or self._close:
            raise RuntimeError("connection is busy or closed")
        data, self._close = writer.encode_request(request, host=host)
        self._method = request.method.encode("latin-1")
        self._outstanding = True
        self._started = False
        return data

    def _h11_parser(self) -> h11.Connection:
        """Hand the response to h11 from its first byte (the fast path declined it)."""
        parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._limits.max_header_bytes)
        # The stand-in's end of message is never sent: reading the response
        # needs only the server side of h11's state machine to expect it.
        method = self._method
        parser.send_with_data_passthrough(_STAND_INS.get(method) or _stand_in(method))
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
        parsed = fast.split_response(self._buf, self._limits)
        if isinstance(parsed, str):
            return None
        status, reason, headers, body, close, used = parsed
        if close or used < len(self._buf):  # bytes nobody asked for: out of step
            self._close = True
        self._buf = b""
        self._outstanding = False
        return HttpResponse(status, headers, body, reason)

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
            elif kind is h11.Response:
                self._start(event)  # type: ignore[arg-type]
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
        size = len(response.reason) + 16  # see Http1ServerCodec._start
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length" and int(value) > limits.max_body_size:
                raise HttpProtocolError(502, f"upstream body over {limits.max_body_size} bytes")
        if size > limits.max_header_bytes:
            raise HttpProtocolError(502, f"upstream head over {limits.max_header_bytes} bytes")
        self._response = response

    def _add_body(self, chunk: bytearray) -> None:
        self._body_size += len(chunk)
        if self._body_size > self._limits.max_body_size:
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

    def _fail(self) -> None:
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
