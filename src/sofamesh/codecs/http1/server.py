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
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from sofamesh.codecs.http1 import fast, paths, relayed_request, strict, writer
from sofamesh.codecs.http1.errors import HttpIncompleteMessage, HttpProtocolError
from sofamesh.codecs.http1.limits import DEFAULT_LIMITS, Http1Limits
from sofamesh.codecs.http1.messages import HttpRequest, HttpResponse, drop_connection_options
from sofamesh.lazy_imports import lazy_module

if TYPE_CHECKING:
    import h11
else:  # the reference parser (with dataclasses): imported with the first connection
    h11 = lazy_module("h11")

# Where the codec is in reading the next request, so a transport can pick a timeout.
IDLE, HEAD, BODY = "idle", "head", "body"


class Http1ServerCodec:
    """One server connection's HTTP/1.1 state; sans-IO (no sockets, no clock)."""

    __slots__ = (
        "_body",
        "_body_size",
        "_buf",
        "_check",
        "_chunks",
        "_closing",
        "_continued",
        "_eof",
        "_error",
        "_h11",
        "_head",
        "_headers",
        "_limits",
        "_parser",
        "_partial",
        "_pending",
        "_request",
        "stream_length",
        "streaming",
    )

    def __init__(self, limits: Http1Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._parser = self._new_parser()
        self._request: h11.Request | None = None  # head read, body still coming
        self._headers: list[tuple[bytes, bytes]] = []  # of _request, lowercased
        self._body: list[bytes | bytearray] = []
        self._body_size = 0
        self._partial = False  # bytes of a not-yet-complete request are buffered
        self._buf = b""  # bytes not yet handed to h11 (the fast path reads them first)
        # llhttp's check of requests relayed as bytes (`relayed_request.py`), with speedups
        self._check = relayed_request.RequestCheck() if fast.LLHTTP else None
        self._h11 = False  # the current request is h11's to parse
        self._head = b""  # its bytes as received, until h11 has read its head (`strict.py`)
        self._chunks: strict.ChunkLines | None = None  # its chunked body's framing, if any
        # One entry per request handed out and not answered yet: (is HEAD, close after).
        self._pending: collections.deque[tuple[bool, bool]] = collections.deque()
        self._closing = False  # no further request will be read
        self._eof = False  # the peer closed its sending side
        self._continued = False  # 100 Continue sent for the current request
        self._error: HttpProtocolError | None = None
        self.streaming = False  # the current request's head is out, its body streams
        self.stream_length: int | None = None  # that body's Content-Length, if it has one

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
            raise self._fail(HttpProtocolError(_status_for(exc), str(exc))) from None
        except HttpProtocolError as exc:
            raise self._fail(exc) from None

    def _parse(self) -> HttpRequest | None:
        parser = self._parser
        while True:
            event = parser.next_event()
            kind = type(event)
            if kind is h11.Data:
                self._add_body(event.data)  # type: ignore[union-attr]
                if self.streaming:
                    return self._streamed_head()
            elif kind is h11.Request:
                self._start(event)  # type: ignore[arg-type]
                if self.streaming:
                    return self._streamed_head()
            elif kind is h11.EndOfMessage:
                return self._finish()
            else:  # NEED_DATA: a fresh parser never pauses or sees EOF
                if self._eof:
                    self._end_of_input()
                return None

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
            target = _request_target(method, target, headers, self._limits)
        self._pending.append((method == "HEAD", close))
        self._buf = self._buf[used:]
        self._partial = bool(self._buf)
        if close:
            self._closing = True
        return HttpRequest(method, target, headers, body, "1.1", self._limits.stream_threshold)

    def _end_of_input(self) -> None:
        self._closing = True
        if self._partial or self._request is not None:
            raise HttpIncompleteMessage(400, "peer closed the connection mid-request")

    def _start(self, request: h11.Request) -> None:
        limits = self._limits
        # raw_items() is a plain list: iterating h11's Headers goes through
        # Sequence.__getitem__ per field, which shows up in profiles.
        self._headers = headers = [(k.lower(), v) for k, v in request.headers.raw_items()]
        if len(headers) > limits.max_headers:
            raise HttpProtocolError(431, f"more than {limits.max_headers} header fields")
        if request.method == b"CONNECT":
            raise HttpProtocolError(501, "CONNECT tunnels are not supported")
        head, self._head = self._head, b""
        if strict.check_request_head(head):
            self._chunks = strict.ChunkLines()
            self._chunks.feed(head[strict.head_end(head) :])
        # h11 bounds only an *incomplete* head; a complete one that arrived in
        # one read is measured here (field bytes plus ": " and CRLF per line).
        size = len(request.target) + 16
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length" and int(value) > limits.stream_threshold > 0:
                self.streaming, self.stream_length = True, int(value)
            elif name == b"content-length" and int(value) > limits.max_body_size:
                raise HttpProtocolError(413, f"body over {limits.max_body_size} bytes")
        if size > limits.max_header_bytes:
            raise HttpProtocolError(431, f"request head over {limits.max_header_bytes} bytes")
        self._request = request
        self._continued = False

    def _add_body(self, chunk: bytearray) -> None:
        self._body_size += len(chunk)
        if self._body_size > self._limits.stream_threshold > 0:  # chunked, past the threshold
            self.streaming, self.stream_length = True, None
        elif self._body_size > self._limits.max_body_size:  # chunked bodies end up here
            raise HttpProtocolError(413, f"body over {self._limits.max_body_size} bytes")
        self._body.append(chunk)

    def _finish(self) -> HttpRequest:
        request, self._request = self._request, None
        self._chunks = None
        assert request is not None
        body = b"".join(self._body)
        self._body.clear()
        self._body_size = 0
        self._headers = drop_connection_options(self._headers)  # the fast path never has any
        method = request.method.decode("latin-1")
        target = _request_target(
            method, request.target.decode("latin-1"), self._headers, self._limits
        )
        close = self._parser.their_state is not h11.DONE  # MUST_CLOSE: close or HTTP/1.0
        self._pending.append((request.method == b"HEAD", close))
        if close:
            self._closing = True
        else:
            self._next_parser()
        return HttpRequest(
            method,
            target,
            self._headers,
            body,
            request.http_version.decode("latin-1"),
            self._limits.stream_threshold,
        )

    def _streamed_head(self) -> HttpRequest:
        """The head of a request whose body `body_data` hands out from here on.

        Its connection closes after the response: the body may not have been
        read whole by then, and no further request may follow an unread body.
        """
        request = self._request
        assert request is not None
        self._headers = drop_connection_options(self._headers)
        method = request.method.decode("latin-1")
        target = _request_target(
            method, request.target.decode("latin-1"), self._headers, self._limits
        )
        self._pending.append((request.method == b"HEAD", True))
        version = request.http_version.decode("latin-1")
        return HttpRequest(
            method, target, self._headers, b"", version, self._limits.stream_threshold
        )

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

    def _next_pieces(self) -> bool:
        """Collect the body pieces h11 has ready; whether the request ended."""
        parser = self._parser
        event = parser.next_event()
        while type(event) is h11.Data:
            self._body.append(event.data)
            event = parser.next_event()
        return type(event) is h11.EndOfMessage  # else NEED_DATA

    def _next_parser(self) -> None:
        leftover = self._parser.trailing_data[0]
        self._parser = self._new_parser()
        self._partial = bool(leftover)
        self._h11 = False  # the next request tries the fast path again
        self._buf = bytes(leftover)

    def _new_parser(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes)

    def _fail(self, error: HttpProtocolError) -> HttpProtocolError:
        self.streaming = False
        self._closing = True
        self._error = error
        return error

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


def _request_target(
    method: str, target: str, headers: list[tuple[bytes, bytes]], limits: Http1Limits
) -> str:
    """The origin-form target with its path normalised (`paths.py`), as every rule must judge it.

    An absolute-form target is reduced to origin form, its authority
    replacing Host (RFC 9112 §3.2.2); `*` is for OPTIONS only (§3.2.4), and
    authority form for CONNECT only (§3.2.3), which is refused before this.
    """
    action = limits.path_with_escaped_slashes_action
    try:
        if target.startswith("/"):
            return paths.normalize_target(target, action)
        if target == "*" and method == "OPTIONS":
            return target
        authority, origin = paths.split_absolute(target)
        normalised = paths.normalize_target(origin, action)
    except paths.PathError as exc:
        raise HttpProtocolError(400, str(exc)) from None
    host = authority.encode("latin-1")
    headers[:] = [(k, host if k == b"host" else v) for k, v in headers]
    return normalised


def _status_for(exc: h11.RemoteProtocolError) -> int:
    hint = exc.error_status_hint
    return hint if hint in (400, 431, 501) else 400
