"""The server side of HTTP/1.1: bytes in, `HttpRequest`s out, responses to bytes.

Theory of operation. h11 parses each request with a fresh `h11.Connection`
(an h11 server in IDLE reads exactly one request); when the request is
complete, whatever followed it (pipelined requests) moves to the next parser.
Responses are serialised by `writer`, so h11 never sees them and its send
side costs nothing. The codec keeps the one piece of cross-request state:
a FIFO of requests awaiting their response, so pipelined responses go out
in request order (RFC 9112 §9.3.2) and each knows if it answers a HEAD and
whether it is the last one.

    receive_data(bytes) ──► fast path (plain requests, `fast.py`)
                        └─► h11 parser (everything else) ──► next_request() -> HttpRequest | None
                                              │ (FIFO of unanswered requests)
    encode_response(HttpResponse) -> bytes ◄──┘ oldest first

Persistence (RFC 9112 §9.3): HTTP/1.1 stays open unless either side says
"Connection: close"; HTTP/1.0 closes after one exchange (like h11, we do not
implement the 1.0 keep-alive extension). After a request asking to close, no
further request is read (RFC 9112 §9.6: "MUST NOT process any further
requests received on that connection").

The h11 side (`H11Requests`, which this codec is built on) is `server_h11.py`.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from sofamesh.codecs.http1 import fast, paths, relayed_request, strict, writer
from sofamesh.codecs.http1.errors import HttpIncompleteMessage, HttpProtocolError
from sofamesh.codecs.http1.limits import DEFAULT_LIMITS, Http1Limits
from sofamesh.codecs.http1.messages import HttpRequest, HttpResponse
from sofamesh.codecs.http1.server_h11 import H11Requests, request_target, status_for
from sofamesh.lazy_imports import lazy_module

if TYPE_CHECKING:
    import h11
else:  # the reference parser (with dataclasses): imported with the first connection
    h11 = lazy_module("h11")

# Where the codec is in reading the next request, so a transport can pick a timeout.
IDLE, HEAD, BODY = "idle", "head", "body"


class Http1ServerCodec(H11Requests):
    """One server connection's HTTP/1.1 state; sans-IO (no sockets, no clock)."""

    __slots__ = ("_check",)  # the rest: `H11Requests`

    def __init__(self, limits: Http1Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._parser = self._new_parser()
        self._request = None  # head read, body still coming
        self._headers = []  # of _request, lowercased
        self._body = []
        self._body_size = 0
        self._partial = False  # bytes of a not-yet-complete request are buffered
        self._buf = b""  # bytes not yet handed to h11 (the fast path reads them first)
        # llhttp's check of requests relayed as bytes (`relayed_request.py`), with speedups
        self._check = relayed_request.RequestCheck() if fast.LLHTTP else None
        self._h11 = False  # the current request is h11's to parse
        self._head = b""  # its bytes as received, until h11 has read its head (`strict.py`)
        self._chunks = None  # its chunked body's framing, if any
        # One entry per request handed out and not answered yet: (is HEAD, close after).
        self._pending = collections.deque()
        self._closing = False  # no further request will be read
        self._eof = False  # the peer closed its sending side
        self._continued = False  # 100 Continue sent for the current request
        self._error = None
        self.streaming = False  # the current request's head is out, its body streams
        self.stream_length = None  # that body's Content-Length, if it has one

    # -- input -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; `b""` means the peer closed its side."""
        if self._closing:
            return  # RFC 9112 §9.6: input after the final request is ignored
        if not data:
            # Not passed to h11: a request body never runs to EOF (RFC 9112
            # §6.3), so EOF only tells a clean end from a truncated request.
            self._eof = True
        elif not self._eof:
            self._partial = True
            if self._h11:
                if self._request is None:
                    self._head += data
                elif self._chunks is not None:
                    try:
                        self._chunks.feed(data)
                    except HttpProtocolError as exc:
                        self._fail(exc)  # next_request raises it
                        return
                self._parser.receive_data(data)
            else:
                self._buf += data

    def next_request(self) -> HttpRequest | None:
        """The next complete request, or None until more data arrives.

        Raises `HttpProtocolError` (malformed: 400, oversized head: 431,
        body over the limit: 413, unsupported: 501); `HttpIncompleteMessage`
        when the peer closed mid-request. After an error the codec is dead.
        """
        if self._error is not None:
            raise self._error
        if self._closing:
            return None
        if not self._partial:  # nothing buffered: skip a round through h11's state machine
            if self._eof:
                self._closing = True
            return None
        try:
            if not self._h11:
                request = self._fast()
                if request is not None or not self._h11:
                    return request
            return self._parse()
        except h11.RemoteProtocolError as exc:
            if self._request is None and strict.head_end(self._head) > 0:
                try:  # the smuggling checks speak first: 400 for CL with TE, whatever h11 says
                    strict.check_request_head(self._head)
                except HttpProtocolError as strict_error:
                    raise self._fail(strict_error) from None
            raise self._fail(HttpProtocolError(status_for(exc), str(exc))) from None
        except HttpProtocolError as exc:
            raise self._fail(exc) from None

    def _fast(self) -> HttpRequest | None:
        """A plain request read without h11, or None (waiting, or handed to h11)."""
        if self._check is not None:
            relay = relayed_request.split_request(self._buf, self._limits, self._check)
            if relay is not None:  # its fields parsed only if something reads them
                request, close, used = relay
                self._pending.append((request.method == "HEAD", close))
                self._buf = self._buf[used:]
                self._partial = bool(self._buf)
                if close:
                    self._closing = True
                return request
        parsed = fast.split_request(self._buf, self._limits)
        if isinstance(parsed, str):
            self._h11 = True  # h11 reads this request from its first byte
            buf, self._buf = self._buf, b""
            self._head = buf
            self._parser.receive_data(buf)
            return None
        method, target, headers, body, close, used = parsed
        if paths.CLEAN.fullmatch(target) is None:  # one C call for a clean target
            target = request_target(method, target, headers, self._limits)
        self._pending.append((method == "HEAD", close))
        self._buf = self._buf[used:]
        self._partial = bool(self._buf)
        if close:
            self._closing = True
        return HttpRequest(method, target, headers, body, "1.1", self._limits.stream_threshold)

    def body_data(self, data: bytes | None) -> tuple[bytes, bool]:
        """Feed bytes of a streamed body (`b""` at EOF, None: none new); (body bytes, ended).

        Raises `HttpProtocolError` for malformed framing and
        `HttpIncompleteMessage` when the peer closed mid-body; the codec is dead then.
        """
        if not self.streaming:
            raise RuntimeError("no request body is streaming")
        if data is not None:
            self.receive_data(data)
        if self._error is not None:
            raise self._error
        try:
            ended = self._next_pieces()
        except h11.RemoteProtocolError as exc:
            raise self._fail(HttpProtocolError(400, str(exc))) from None
        body = b"".join(self._body)
        self._body.clear()
        if ended:
            self.streaming, self._request, self._chunks = False, None, None
            self._closing = True
        elif self._eof:
            raise self._fail(HttpIncompleteMessage(400, "peer closed the connection mid-body"))
        return body, ended

    # -- output ------------------------------------------------------------

    def encode_response(self, response: HttpResponse, *, close: bool = False) -> bytes:
        """Bytes answering the oldest unanswered request.

        `close=True` makes it the connection's last response (a draining
        server). Raises ValueError for an invalid response, leaving the
        request unanswered so the caller can send a 500 instead.
        """
        if not self._pending:
            raise RuntimeError("no request is waiting for a response")
        head, closing = self._pending[0]
        closing = closing or close
        data, closing = writer.encode_response(response, head=head, close=closing)
        self._pending.popleft()
        if closing:
            self._closing = True
        return data

    def encode_streamed_head(
        self, response: HttpResponse, *, close: bool = False
    ) -> tuple[bytes, str]:
        """`encode_response` for a response whose body follows as `response.stream`.

        Returns the head and how the body goes out (`writer.RAW`, `CHUNKED`
        or `NO_BODY`); a CHUNKED body's pieces go out as `writer.chunk`, then
        `writer.LAST_CHUNK`.
        """
        if not self._pending:
            raise RuntimeError("no request is waiting for a response")
        head, closing = self._pending[0]
        data, closing, framing = writer.encode_streamed_head(
            response, head=head, close=closing or close
        )
        self._pending.popleft()
        if closing:
            self._closing = True
        return data, framing

    def encode_continue(self) -> bytes:
        """The interim response a client waiting on `Expect: 100-continue` needs."""
        self._continued = True
        return writer.CONTINUE

    def encode_error(self, error: HttpProtocolError) -> bytes:
        """The final response for a protocol error; the connection then closes."""
        self._closing = True
        return writer.encode_error(error.status, error.reason)

    # -- state -------------------------------------------------------------

    @property
    def wants_continue(self) -> bool:
        """The peer waits for 100 Continue before sending the body (RFC 9110 §10.1.1)."""
        return (
            self._request is not None
            and not self._continued
            and self._parser.they_are_waiting_for_100_continue
        )

    @property
    def phase(self) -> str:
        """IDLE (nothing of a next request buffered), HEAD or BODY."""
        if self._request is not None:
            return BODY
        return HEAD if self._partial else IDLE

    def resting(self) -> bool:
        """In the IDLE phase and not `must_close`: the next request may come, and nothing of
        it is here yet (the server loop's question, in one call rather than two properties)."""
        return (
            not self._partial
            and self._request is None
            and not (self._closing and not self._pending)
        )

    @property
    def must_close(self) -> bool:
        """Every response is sent and no further request will be read."""
        return self._closing and not self._pending

    @property
    def unanswered(self) -> int:
        return len(self._pending)
