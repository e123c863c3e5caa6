"""What h11 accepts and a proxy must not: the raw head checked before h11 reads it.

h11 is lenient where a single endpoint may be, but a proxy that forwards
what it parsed must agree byte for byte with every parser behind it, or one
request becomes two (request smuggling, RFC 9112 §11.2). h11 unfolds obs-fold
lines, collapses `Content-Length: 5, 5` and repeated equal Content-Lengths,
lets Transfer-Encoding override Content-Length, and takes control characters
in values, lowercase methods and any `HTTP/x.y`. Envoy answers all of these
with 400 and closes, and so does this codec: the head as received (before
h11 rewrites it) must pass `check_request_head` or `check_response_head`.

The fast path (`fast.py`) only takes heads that would pass, so these checks
run on h11's path alone and cost the common message nothing.
"""

from __future__ import annotations

import re
from typing import Final

from sofamesh.codecs.http1.errors import HttpProtocolError

# RFC 9110 §9.1: methods are case-sensitive tokens; every registered one is
# uppercase, and Envoy refuses the rest, so a lowercase method is refused
# rather than forwarded to an app that might upper-case it.
_REQUEST_LINE: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Z]+ [\x21-\x7e]+ HTTP/1\.[01]")
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9] [^\x00-\x08\x0a-\x1f\x7f]*")
_CONTROL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # RFC 9110 §5.5: HTAB only
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")


def head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the first head in `buf`, or -1."""
    end = buf.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


MAX_CHUNK_LINE: Final = 4096
"""Bytes a chunk-size line may take, extensions included (h11 bounds none that arrives whole)."""
_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,20}")


def check_request_head(head: bytes | bytearray) -> bool:
    """Raise `HttpProtocolError` (400) for a request head a proxy must not forward.

    Returns whether the body is chunked.
    """
    lines = _lines(head, 400)
    if _REQUEST_LINE.fullmatch(lines[0]) is None:
        raise HttpProtocolError(400, "invalid request line (method, target or HTTP version)")
    chunked = _check_fields(lines[1:], 400)
    if chunked and lines[0].endswith(b"1.0"):
        raise HttpProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
    return chunked


def check_response_head(head: bytes | bytearray) -> None:
    """Raise `HttpProtocolError` (502) for an upstream response head with ambiguous framing."""
    lines = _lines(head, 502)
    if _STATUS_LINE.fullmatch(lines[0]) is None:
        raise HttpProtocolError(502, "invalid status line from upstream")
    _check_fields(lines[1:], 502)


def _lines(head: bytes | bytearray, status: int) -> list[bytes]:
    end = head.find(b"\r\n\r\n")
    block = bytes(head if end < 0 else head[:end])
    if b"\n" in block.replace(b"\r\n", b""):
        raise HttpProtocolError(status, "bare LF in the message head (RFC 9112 §2.2)")
    return block.split(b"\r\n")


def _check_fields(lines: list[bytes], status: int) -> bool:
    """Check each field line; True if Transfer-Encoding is present."""
    lengths = 0
    chunked = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise HttpProtocolError(status, "obsolete line folding (RFC 9112 §5.2)")
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        if _CONTROL.search(value) is not None:
            raise HttpProtocolError(status, "control character in a header value")
        name = name.lower()
        if name == b"content-length":
            lengths += 1
            if lengths > 1 or _DIGITS.fullmatch(value) is None:
                raise HttpProtocolError(status, "repeated or invalid Content-Length")
        elif name == b"transfer-encoding":
            chunked = True
    if chunked and lengths:
        raise HttpProtocolError(status, "both Content-Length and Transfer-Encoding")
    return chunked


class ChunkLines:
    """Bounds the chunk-size lines of a chunked body as its bytes arrive.

    h11 decodes the body; this only walks its framing (size line, then that
    many bytes and CRLF) to refuse a size line over `MAX_CHUNK_LINE`. A line
    it cannot read, and the last chunk's trailers, are h11's to judge.
    """

    __slots__ = ("_done", "_line", "_skip")

    def __init__(self) -> None:
        self._skip = 0  # chunk data (and its CRLF) still to pass over
        self._line = b""  # the size line so far
        self._done = False

    def feed(self, data: bytes | bytearray) -> None:
        """Raise `HttpProtocolError` (400) once a size line runs over the limit."""
        i, n = 0, len(data)
        while i < n and not self._done:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            end = data.find(b"\n", i)
            self._line += data[i : n if end < 0 else end + 1]
            if len(self._line) > MAX_CHUNK_LINE:
                raise HttpProtocolError(400, f"chunk-size line over {MAX_CHUNK_LINE} bytes")
            if end < 0:
                return
            i = end + 1
            size = _CHUNK_SIZE.match(self._line)
            self._line = b""
            if size is None or size.group() == b"0" * len(size.group()):
                self._done = True  # h11 refuses the line, or the trailers follow
            else:
                self._skip = int(size.group(), 16) + 2
