"""The fast path: strict parsing of the common HTTP/1.1 message, h11 for the rest.

h11 is the reference parser of this codec, and it costs about 20 µs per
message head in pure Python. Most messages a mesh carries are plain: an
HTTP/1.1 head of well-formed fields, a Content-Length body that arrived with
it. This module reads exactly those with a few regular expressions (C code),
and answers DEFER for anything else, so h11 decides every case that needs
judgement: chunked or absent framing, `Expect`, `Upgrade`, obs-fold lines,
duplicate framing fields, HTTP/1.0, 1xx/204/304 and HEAD responses, bodies
still on their way, and every malformed message (which h11 then rejects with
its precise reason). The grammar accepted here is a subset of what h11
accepts (RFC 9112 §2-§6, RFC 9110 §5), so the two paths never disagree on a
message the fast path takes; tests/codecs/test_http1_fast.py checks that
both paths give identical results.

The field lines are split by llhttp (the `httptools` package, the
`speedups` extra) when it is importable and `SOFAMESH_PURE_PYTHON` is not
set: its C state machine enforces the grammar `_FIELDS` does (token names,
values free of controls but HTAB) for about two thirds of the instructions a
field, and any head it refuses goes the pure way, which decides as before
(tests/codecs/test_http1_llhttp.py).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Final

from sofamesh.codecs.http1.errors import HttpProtocolError
from sofamesh.codecs.http1.limits import Http1Limits
from sofamesh.codecs.http1.messages import ParsedFields
from sofamesh.lazy_imports import lazy_module

DEFER: Final = "defer"
"""Not a plain message: hand the bytes to h11."""

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"  # RFC 9110 §5.6.2
# RFC 9110 §5.5: OWS field-value OWS, where a value is runs of VCHAR / obs-text separated
# by SP / HTAB. Every string of those bytes splits that way, so the line is simply "no
# control but HTAB", a class sre scans in one tight loop (the nested form backtracked
# through a group per word and cost about 15 % of the proxy's instructions).
_VALUE = rb"[^\x00-\x08\x0a-\x1f\x7f]*"
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":" + _VALUE + rb"\r\n)*")
# Methods are uppercase tokens here: h11's path refuses the others (`strict.py`).
_METHOD = rb"[-!#$%&'*+.^_`|~0-9A-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _METHOD + rb") ([\x21-\x7e]+) HTTP/1\.1\r\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9]) ([^\x00-\x08\x0a-\x1f\x7f]*)\r\n")
_HEAD_END = b"\r\n\r\n"

# Fields whose presence means the message needs h11's judgement.
_REQUEST_DEFER = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"te"})
_RESPONSE_DEFER = frozenset({b"transfer-encoding", b"upgrade"})
# Every field `_framing` looks at.
_FRAMING_NAMES = _REQUEST_DEFER | _RESPONSE_DEFER | {b"content-length", b"connection", b"host"}


def _fields(block: bytes) -> ParsedFields | None:
    """Field lines of a validated block (ending in CRLF), names lowercased; None if invalid."""
    if _FIELDS.fullmatch(block) is None:
        return None
    fields = []
    for line in block.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        fields.append((name.lower(), value.strip(b" \t")))
    out = ParsedFields(fields)
    out.checked = True  # the writer's checks hold for every line `_FIELDS` matched
    return out


class _Lines(list[tuple[bytes, bytes]]):
    """llhttp's field callback target: one per head, the fields as `_fields` would give them.

    A list itself, so that making one runs no Python `__init__`.
    """

    __slots__ = ()

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the leading OWS and keeps the trailing (RFC 9110 §5.5 drops both)
        self.append((name.lower(), value.rstrip(b" \t")))


def _llhttp_fields(parser: Any, buf: bytes, start: int, end: int) -> ParsedFields | None:
    """`_fields` of the lines between `start` and the blank line at `end`, read by llhttp.

    llhttp (strict, no lenient flags) takes a name only of token characters and
    a value only of VCHAR, obs-text, SP and HTAB, each line ending in CRLF: the
    grammar of `_FIELDS`, so the list may be marked checked. It also refuses
    what `_fields` leaves to others (a start line `_REQUEST_LINE` or
    `_STATUS_LINE` takes but llhttp does not, duplicate Content-Length,
    Transfer-Encoding with Content-Length): `_fields` then decides, as it does
    without llhttp.
    """
    lines = _Lines()
    try:
        parser(lines).feed_data(buf[: end + 4])
    except (_httptools.HttpParserError, _httptools.HttpParserUpgrade):
        return _fields(buf[start : end + 2])
    out = ParsedFields(lines)
    out.checked = True
    return out


if TYPE_CHECKING:
    import httptools as _httptools
else:
    try:  # bound now, run with the first head it splits: an idle sidecar does not load llhttp
        _httptools = lazy_module("httptools")
    except ModuleNotFoundError:
        _httptools = None

LLHTTP = _httptools is not None and not os.environ.get("SOFAMESH_PURE_PYTHON")
"""Whether heads are split by llhttp (see the module's docstring)."""


def _first_request_parser(protocol: Any) -> Any:
    """llhttp's request parser for `protocol`; the class itself takes this function's place."""
    global _REQUEST_PARSER
    _REQUEST_PARSER = _httptools.HttpRequestParser
    return _REQUEST_PARSER(protocol)


def _first_response_parser(protocol: Any) -> Any:
    """llhttp's response parser for `protocol`; the class itself takes this function's place."""
    global _RESPONSE_PARSER
    _RESPONSE_PARSER = _httptools.HttpResponseParser
    return _RESPONSE_PARSER(protocol)


_REQUEST_PARSER: Any = _first_request_parser
_RESPONSE_PARSER: Any = _first_response_parser


def _framing(
    fields: list[tuple[bytes, bytes]], defer: frozenset[bytes]
) -> tuple[int, bool, int] | None:
    """(content length or -1, connection: close, host count), or None to defer."""
    length = -1
    close = False
    hosts = 0
    for name, value in fields:
        if name not in _FRAMING_NAMES:
            continue  # most fields: one set look-up, not four comparisons
        if name == b"content-length":
            # [0-9]{1,18}: bytes.isdigit is ASCII digits only, and no regex call
            if length >= 0 or not value.isdigit() or len(value) > 18:
                return None  # repeated or odd framing: h11 decides (RFC 9112 §6.3)
            length = int(value)
        elif name == b"connection":
            token = value.lower()
            if token == b"close":
                close = True
            elif token != b"keep-alive":
                return None
        elif name == b"host":
            hosts += 1
        elif name in defer:
            return None
    return length, close, hosts


def split_request(
    buf: bytes, limits: Http1Limits
) -> tuple[str, str, ParsedFields, bytes, bool, int] | str:
    """Parse one plain request at the start of `buf`.

    Returns (method, target, fields, body, close, bytes used), or DEFER when
    the request is not plain or not complete. Raises `HttpProtocolError` for
    limits it can decide (413, 431).
    """
    end = buf.find(_HEAD_END, 0, limits.max_header_bytes + 4)
    if end < 0:
        return DEFER  # a head in pieces: h11 assembles it (and rejects garbage early)
    line = _REQUEST_LINE.match(buf, 0, end + 2)
    if line is None:
        return DEFER
    if LLHTTP:
        fields = _llhttp_fields(_REQUEST_PARSER, buf, line.end(), end)
    else:
        fields = _fields(buf[line.end() : end + 2])
    if fields is None:
        return DEFER
    framing = _framing(fields, _REQUEST_DEFER)
    method = line.group(1)
    if framing is None or method == b"CONNECT" or framing[2] != 1:
        return DEFER  # h11 answers CONNECT (501) and a missing or repeated Host (400)
    length, close, _ = framing
    if len(fields) > limits.max_headers:
        raise HttpProtocolError(431, f"more than {limits.max_headers} header fields")
    if length > limits.stream_threshold > 0:
        return DEFER  # a body to stream: h11 reads the head, the server codec the body
    if length > limits.max_body_size:
        raise HttpProtocolError(413, f"body over {limits.max_body_size} bytes")
    start = end + 4
    stop = start + max(length, 0)
    if len(buf) < stop:
        return DEFER  # the body is still arriving: h11 collects it
    target = line.group(2).decode("latin-1")
    body = buf[start:stop]
    return method.decode("latin-1"), target, fields, body, close, stop


def split_response(
    buf: bytes, limits: Http1Limits
) -> tuple[int, bytes, ParsedFields, bytes, bool, int] | str:
    """Parse one plain response (not to HEAD) at the start of `buf`.

    Returns (status, reason, fields, body, close, bytes used), or DEFER.
    """
    end = buf.find(_HEAD_END, 0, limits.max_header_bytes + 4)
    if end < 0:
        return DEFER
    line = _STATUS_LINE.match(buf, 0, end + 2)
    if line is None:
        return DEFER
    status = int(line.group(1))
    if status in (204, 304):
        return DEFER  # bodiless by definition (RFC 9112 §6.3): h11's rules
    if LLHTTP:
        fields = _llhttp_fields(_RESPONSE_PARSER, buf, line.end(), end)
    else:
        fields = _fields(buf[line.end() : end + 2])
    framing = _framing(fields, _RESPONSE_DEFER) if fields is not None else None
    if fields is None or framing is None or framing[0] < 0 or len(fields) > limits.max_headers:
        return DEFER
    length, close, _ = framing
    if length > limits.max_body_size:
        return DEFER  # h11's path reports the limit (502) with its wording
    start = end + 4
    stop = start + length
    if len(buf) < stop:
        return DEFER
    return status, line.group(2), fields, buf[start:stop], close, stop
