"""Serialising buffered messages: one `bytes` per message, framed by Content-Length.

h11 parses what peers send; we write what we send. With the whole body in
hand the framing is always a Content-Length (RFC 9112 §6.3), so the writer is
a join of pre-validated pieces, which costs a fraction of routing every
message through h11's event state machine (see benchmarks/http1_codec.py).
The grammar checks below mirror h11's, so anything h11 parsed can be
forwarded unchanged, and nothing a caller puts in a header can smuggle a
second message (CR/LF/NUL are never accepted).
"""

from __future__ import annotations

import functools
import re

from sofamesh.codecs.http1.messages import FRAMING, HttpRequest, HttpResponse, checked
from sofamesh.codecs.http1.relayed import RelayedResponse
from sofamesh.codecs.http1.relayed_request import RelayedRequest

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")  # RFC 9110 §5.6.2
# RFC 9110 §5.5, h11's reading: empty, or starting and ending with a byte that is neither
# NUL nor whitespace, with SP / HTAB (never CR, LF, VT, FF or NUL) between. Written without
# a repeated group: sre then scans the middle in one loop instead of one group per word.
_FIELD_VALUE = rb"(?:[^\x00\s](?:[^\x00\n\x0b\x0c\r]*[^\x00\s])?)?"
# The same lines, with the value's optional parts as a branch and a look-behind rather than
# nested optional groups, which sre runs as repeats (a fifth fewer instructions a line):
# ": " and a value that ends in no SP / HTAB, or ": " and nothing.
_FIELD_LINES = re.compile(
    rb"(?:[-!#$%&'*+.^_`|~0-9a-zA-Z]+:(?: [^\x00\s][^\x00\n\x0b\x0c\r]*(?<![ \t])| )\r\n)*"
)
_FIELD_VALUE_RE = re.compile(_FIELD_VALUE)
_TARGET = re.compile(rb"[\x21-\x7e]+")  # RFC 9112 §3.2: no whitespace or controls
_REASON = re.compile(rb"[^\x00\r\n\x0b\x0c]*")  # RFC 9112 §4: HTAB / SP / VCHAR / obs-text

# Framing is ours to write: the body length is known, and the connection's
# persistence is decided by the codec, so callers' values are replaced.
_FRAMING = FRAMING

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = (b"connection", b": ", b"close", b"\r\n")
_METHODS_WITH_CONTENT = frozenset({"POST", "PUT", "PATCH"})


@functools.lru_cache(maxsize=1024)
def _valid_name(name: bytes) -> bool:
    # Names repeat across messages, so the cache turns a regex into a dict hit.
    return _TOKEN.fullmatch(name) is not None


@functools.lru_cache(maxsize=1024)
def valid_value(value: bytes) -> bool:
    """Whether `value` may be written as a field value (RFC 9110 §5.5, as `_finish` checks)."""
    # The values a mesh adds (service and app names) repeat: checked once each.
    return _FIELD_VALUE_RE.fullmatch(value) is not None


def has_close(value: bytes) -> bool:
    """Whether a Connection header value carries the "close" option (RFC 9112 §9.6)."""
    return any(t.strip() == b"close" for t in value.lower().split(b","))


def encode_response(resp: HttpResponse, *, head: bool, close: bool) -> tuple[bytes, bool]:
    """`resp` as bytes, and whether the connection closes after it.

    `head`: it answers a HEAD (no body is sent); `close`: the codec already
    decided this is the last response (a response's own "Connection: close"
    makes it the last one too).

    RFC 9110 §8.6: a HEAD or 304 response may carry the length a GET would
    have had, so a caller's Content-Length is kept for those; a 204 carries
    none; every other response gets len(body).
    """
    status = resp.status
    if type(resp) is RelayedResponse and resp.relay is not None and not head:
        relay = _relayed(resp, close)
        if relay is not None:
            return relay, close
    if not 200 <= status <= 999:
        raise ValueError(f"final response status must be 200..999, got {status}")
    parts = [_status_line(status, resp.reason)]
    length: bytes | None = None if status in (204, 304) else b"%d" % len(resp.body)
    ok = checked(resp.headers)  # the parser's, unchanged: checked already (`ParsedFields`)
    for name, value in resp.headers:
        if name in _FRAMING:
            if name == b"connection":
                close = close or has_close(value)
            elif name == b"content-length" and (head or status == 304) and value.isdigit():
                length = value
            continue
        if not ok and not _valid_name(name):
            raise ValueError(f"invalid header name {name!r}")
        parts += (name, b": ", value, b"\r\n")
    if length is not None and status != 204:
        parts += (b"content-length", b": ", length, b"\r\n")
    if close:
        parts += _CLOSE
    return _finish(parts, b"" if head or status in (204, 304) else resp.body, ok), close


def _relayed(resp: RelayedResponse, close: bool) -> bytes | None:
    """A relayed response's bytes (`relayed.py`), as `encode_response` frames any other;
    None if it must take the usual way (a status with no body, or none at all)."""
    status, body = resp.status, resp.body
    if not 200 <= status <= 999 or status in (204, 304):
        return None
    line = _status_line(status, resp.reason)
    end = b"connection: close\r\n\r\n" if close else b"\r\n"
    return b"".join((line, resp.relay, b"content-length: %d\r\n" % len(body), end, body))  # type: ignore[arg-type]


# How a streamed body goes on the wire after its head (`encode_streamed_head`).
NO_BODY, RAW, CHUNKED = "none", "raw", "chunked"
LAST_CHUNK = b"0\r\n\r\n"


def encode_streamed_head(resp: HttpResponse, *, head: bool, close: bool) -> tuple[bytes, bool, str]:
    """The head of `resp`, whose body follows as `resp.stream`; (bytes, closes after, framing).

    The framing says how the body's pieces go out: RAW under the stream's
    Content-Length or, on a connection that closes after this response, with
    no framing at all (the close ends it, RFC 9112 §6.3); CHUNKED otherwise
    (§7.1); NO_BODY for a HEAD, 204 or 304.
    """
    status, stream = resp.status, resp.stream
    assert stream is not None
    if not 200 <= status <= 999:
        raise ValueError(f"final response status must be 200..999, got {status}")
    parts = [_status_line(status, resp.reason)]
    for name, value in resp.headers:
        if name in _FRAMING:
            close = close or (name == b"connection" and has_close(value))
            continue
        if not _valid_name(name):
            raise ValueError(f"invalid header name {name!r}")
        parts += (name, b": ", value, b"\r\n")
    framing = NO_BODY if head or status in (204, 304) else RAW
    if stream.length is not None and status != 204:
        parts += (b"content-length", b": ", b"%d" % stream.length, b"\r\n")
    elif framing is RAW and not close:
        parts += (b"transfer-encoding", b": ", b"chunked", b"\r\n")
        framing = CHUNKED
    if close:
        parts += _CLOSE
    return _finish(parts, b""), close, framing


def chunk(piece: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1); `piece` is not empty."""
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def encode_request(req: HttpRequest, *, host: bytes | None) -> tuple[bytes, bool]:
    """`req` as HTTP/1.1 bytes, and whether it asks to close the connection.

    `host` is written as the Host header when `req` has none (RFC 9112 §3.2
    makes it mandatory). Content-Length goes on every request with a body and
    on POST/PUT/PATCH without one (RFC 9110 §8.6).
    """
    if type(req) is RelayedRequest and req.relay is not None:
        # Its line and fields as received, checked then, and the mesh's, checked by the
        # mapping (`relayed_request.py`): Host is among them, Connection is not.
        body = req.body
        if body or req.method in _METHODS_WITH_CONTENT:
            return b"".join((req.relay, b"content-length: %d\r\n\r\n" % len(body), body)), False
        return req.relay + b"\r\n", False
    parts, close, ok = _request_head(req, host)
    if req.body or req.method in _METHODS_WITH_CONTENT:
        parts += (b"content-length", b": ", b"%d" % len(req.body), b"\r\n")
    if close:
        parts += _CLOSE
    return _finish(parts, req.body, ok), close


def encode_streamed_request(req: HttpRequest, *, host: bytes | None) -> tuple[bytes, bool, str]:
    """The head of `req`, whose body follows as `req.stream`; (bytes, asks to close, framing).

    Framing: RAW under the stream's Content-Length, else CHUNKED (RFC 9112 §7.1).
    """
    stream = req.stream
    assert stream is not None
    parts, close, _ = _request_head(req, host)
    if stream.length is not None:
        parts += (b"content-length", b": ", b"%d" % stream.length, b"\r\n")
    else:
        parts += (b"transfer-encoding", b": ", b"chunked", b"\r\n")
    if close:
        parts += _CLOSE
    return _finish(parts, b""), close, RAW if stream.length is not None else CHUNKED


def _request_head(req: HttpRequest, host: bytes | None) -> tuple[list[bytes], bool, bool]:
    """The request line and headers of `req` but its framing; whether it asks to close; and
    whether every field line is the parser's, checked already.

    `host` is added when `req` has no Host header.
    """
    method = req.method.encode("latin-1")
    target = req.target.encode("latin-1")
    if not _valid_name(method) or _TARGET.fullmatch(target) is None:
        raise ValueError(f"invalid request line {req.method!r} {req.target!r}")
    parts = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    close = False
    ok = checked(req.headers)  # the parser's, unchanged: checked already (`ParsedFields`)
    for name, value in req.headers:
        if name in _FRAMING:
            close = close or (name == b"connection" and has_close(value))
            continue
        if not ok and not _valid_name(name):
            raise ValueError(f"invalid header name {name!r}")
        if name == b"host":
            host = None
        parts += (name, b": ", value, b"\r\n")
    if host is not None:
        parts += (b"host", b": ", host, b"\r\n")
        ok = False  # a line of ours among them: `_finish` checks them all
    return parts, close, ok


def encode_error(status: int, reason: str) -> bytes:
    """A small text/plain error response that closes the connection."""
    body = reason.encode("ascii", "replace") + b"\n"
    resp = HttpResponse(status, [(b"content-type", b"text/plain; charset=utf-8")], body)
    return encode_response(resp, head=False, close=True)[0]


@functools.lru_cache(maxsize=256)
def _status_line(status: int, reason: bytes) -> bytes:
    # A proxy forwards its upstream's few distinct lines ("200 OK") over and over: checked
    # and formatted once each (an invalid reason raises, which is never cached).
    if not reason:
        # The standard phrase (`http.HTTPStatus`'s), if any: the `http` module and its enums
        # load with the first status line that needs one, not with the codec.
        import http

        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            return b"HTTP/1.1 %d \r\n" % status
        return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("ascii"))
    if _REASON.fullmatch(reason) is None:
        raise ValueError(f"invalid reason phrase {reason!r}")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def _finish(parts: list[bytes], body: bytes, ok: bool = False) -> bytes:
    """Join start line, field lines and body, checking every field value unless `ok` (the
    fields are a `ParsedFields` the parser checked and nobody changed).

    Each field line is four parts (name, ": ", value, CRLF). The regex checks
    the values at C speed, and counting CRLFs proves no value contained a line
    break that could start a forged field or message (RFC 9112 §2.2).
    """
    lines = (len(parts) - 1) // 4
    parts.append(b"\r\n")
    parts.append(body)
    data = b"".join(parts)
    if ok:
        return data
    start, end = len(parts[0]), len(data) - len(body) - 2
    if data.count(b"\r\n", start, end) != lines or not _FIELD_LINES.fullmatch(data, start, end):
        raise ValueError(f"invalid value of header {_first_bad_value(parts)!r}")
    return data


def _first_bad_value(parts: list[bytes]) -> bytes:
    for i in range(1, len(parts) - 2, 4):
        if _FIELD_VALUE_RE.fullmatch(parts[i + 2]) is None:
            return parts[i]
    return b"?"
