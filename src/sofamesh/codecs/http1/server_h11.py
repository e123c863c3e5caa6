"""The HTTP/1.1 server codec's h11 side: the requests its fast path hands over.

A request the fast path does not take whole (a chunked or streamed body, an
unusual head) is parsed by h11 from its first byte, its head checked against
smuggling by `strict.py`, and its target normalised as every rule must judge it
(`request_target`). `Http1ServerCodec` (server.py) is built on `H11Requests`,
which declares the codec's fields and leaves setting them up to the codec.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from sofamesh.codecs.http1 import paths, strict
from sofamesh.codecs.http1.errors import HttpIncompleteMessage, HttpProtocolError
from sofamesh.codecs.http1.limits import Http1Limits
from sofamesh.codecs.http1.messages import HttpRequest, drop_connection_options
from sofamesh.lazy_imports import lazy_module

if TYPE_CHECKING:
    import h11
else:  # the reference parser (with dataclasses): imported with the first connection
    h11 = lazy_module("h11")


class H11Requests:
    """Parsing with h11, for `Http1ServerCodec`: the codec's fields (slots) are declared
    here, where both halves read them, and set by `Http1ServerCodec.__init__`."""

    __slots__ = (
        "_body",
        "_body_size",
        "_buf",
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

    _limits: Http1Limits
    _parser: h11.Connection
    _request: h11.Request | None
    _headers: list[tuple[bytes, bytes]]
    _body: list[bytes | bytearray]
    _body_size: int
    _partial: bool
    _buf: bytes
    _h11: bool
    _head: bytes
    _chunks: strict.ChunkLines | None
    _pending: collections.deque[tuple[bool, bool]]
    _closing: bool
    _eof: bool
    _continued: bool
    _error: HttpProtocolError | None
    streaming: bool
    stream_length: int | None

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
        target = request_target(
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
        target = request_target(
            method, request.target.decode("latin-1"), self._headers, self._limits
        )
        self._pending.append((request.method == b"HEAD", True))
        version = request.http_version.decode("latin-1")
        return HttpRequest(
            method, target, self._headers, b"", version, self._limits.stream_threshold
        )

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


def request_target(
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


def status_for(exc: h11.RemoteProtocolError) -> int:
    hint = exc.error_status_hint
    return hint if hint in (400, 431, 501) else 400
