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
"""

from __future__ import annotations

import re
from typing import Final

from sofamesh.codecs.http1.errors import HttpProtocolError
from sofamesh.codecs.http1.limits import Http1Limits

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
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEAD_END = b"\r\n\r\n"

# Fields whose presence means the message needs h11's judgement.
_REQUEST_DEFER = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"te"})
_RESPONSE_DEFER = frozenset({b"transfer-encoding", b"upgrade"})


# Run on a block `_FIELDS` accepted: each line's name (from the lowercased block) and its
# value without the OWS around it. A name holds no colon and a value no CR or LF, so the
# first colon of a line is its separator and every match is exactly one line. Two C calls
# in place of a Python loop over the lines.
_NAMES = re.compile(rb"^(" + _TOKEN + rb"):", re.MULTILINE)
_VALUES = re.compile(rb":[ \t]*((?:[^\r]*[^\r \t])?)[ \t]*\r\n")

_Fields = tuple[list[bytes], list[bytes]]


def _fields(block: bytes) -> _Fields | None:
    """Names (lowercased) and values of a block of field lines ending in CRLF; None if invalid."""
    if _FIELDS.fullmatch(block) is None:
        return None
    return _NAMES.findall(block.lower()), _VALUES.findall(block)


def _framing(names: list[bytes], values: list[bytes], defer: frozenset[bytes]) -> int | None:
    """The content length (-1: none), or None to defer (odd framing, or a field in `defer`).

    Whole-list look-ups (C) rather than a loop over the fields: a plain message has one
    Content-Length at most, and one Connection field at most, naming close or keep-alive.
    """
    if not defer.isdisjoint(names):
        return None
    length = -1
    count = names.count(b"content-length")
    if count:
        value = values[names.index(b"content-length")]
        if count > 1 or _DIGITS.fullmatch(value) is None:
            return None  # repeated or odd framing: h11 decides (RFC 9112 §6.3)
        length = int(value)
    return length


def _closes(names: list[bytes], values: list[bytes]) -> bool | None:
    """Whether the message says "Connection: close"; None to defer (any other option)."""
    if b"connection" not in names:
        return False
    if names.count(b"connection") > 1:
        return None
    token = values[names.index(b"connection")].lower()
    if token == b"close":
        return True
    return False if token == b"keep-alive" else None


def split_request(
    buf: bytes, limits: Http1Limits
) -> tuple[str, str, list[tuple[bytes, bytes]], bytes, bool, int] | str:
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
    parsed = _fields(buf[line.end() : end + 2])
    if parsed is None:
        return DEFER
    names, values = parsed
    length = _framing(names, values, _REQUEST_DEFER)
    close = _closes(names, values)
    method = line.group(1)
    if length is None or close is None or method == b"CONNECT" or names.count(b"host") != 1:
        return DEFER  # h11 answers CONNECT (501) and a missing or repeated Host (400)
    fields = list(zip(names, values, strict=True))
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
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool, int] | str:
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
    parsed = _fields(buf[line.end() : end + 2])
    if parsed is None:
        return DEFER
    names, values = parsed
    length = _framing(names, values, _RESPONSE_DEFER)
    close = _closes(names, values)
    if length is None or length < 0 or close is None or len(names) > limits.max_headers:
        return DEFER
    fields = list(zip(names, values, strict=True))
    if length > limits.max_body_size:
        return DEFER  # h11's path reports the limit (502) with its wording
    start = end + 4
    stop = start + length
    if len(buf) < stop:
        return DEFER
    return status, line.group(2), fields, buf[start:stop], close, stop
