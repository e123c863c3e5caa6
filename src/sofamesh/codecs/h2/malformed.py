"""The header rules that make a request or response malformed (RFC 9113 §8.1.1, §8.2.2, §8.3).

Both codecs check these themselves (h2's own validation turns a bad stream
into a connection error); a malformed stream is reset, its neighbours live on.
Each check also returns the message's content-length (None: none), which the
lean codec compares with the DATA that follows (RFC 9113 §8.1.1); reading it
costs a stream without one nothing more than the scan the rules need anyway.
"""

from __future__ import annotations

from sofamesh.codecs.h2.events import RawHeaders

CONTENT_LENGTH = b"content-length"
# RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Names a request's scan looks at twice: one set lookup per field decides.
_SPECIAL = _CONNECTION_SPECIFIC | {b"te", CONTENT_LENGTH}
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority"})
# RFC 9110 §6.4.1: responses defined to have no content, whatever their content-length says
# (RFC 9113 §8.1.1 lets such a response carry a non-zero one).
_NO_CONTENT_STATUS = frozenset({b"204", b"304"})
BAD_CONTENT_LENGTH = "invalid or conflicting content-length"


def malformed_request(headers: RawHeaders) -> tuple[str, int | None]:
    """Why a request's header block is malformed (RFC 9113 §8.3.1), or ''; its content-length."""
    seen: set[bytes] = set()
    regular = False
    length: int | None = None
    for name, value in headers:
        if name[:1] == b":":
            if regular or name in seen or name not in _REQUEST_PSEUDO:
                return f"pseudo-header {name!r} misplaced, repeated or unknown", None
            seen.add(name)
        else:
            regular = True
            if name in _SPECIAL:
                if name == CONTENT_LENGTH:
                    length = _content_length(value, length)
                    if length < 0:
                        return BAD_CONTENT_LENGTH, None
                elif name != b"te" or value != b"trailers":
                    return f"connection-specific field {name!r}", None
            if name.lower() != name:
                return f"uppercase field name {name!r}", None
    if b":method" not in seen or b":path" not in seen or b":scheme" not in seen:
        return "request lacks :method, :scheme or :path", None
    return "", length


def malformed_response(headers: RawHeaders) -> tuple[str, int | None]:
    """Why a final response's header block is malformed, or ''; its content-length (None:
    none, or a response that has no content whatever it says: 204, 304)."""
    if not headers or headers[0][0] != b":status" or not headers[0][1].isdigit():
        return "response lacks a leading :status", None
    length: int | None = None
    for name, value in headers:
        if name == CONTENT_LENGTH:
            length = _content_length(value, length)
            if length < 0:
                return BAD_CONTENT_LENGTH, None
    if length is not None and headers[0][1] in _NO_CONTENT_STATUS:
        return "", None
    return "", length


def bad_content_length(headers: RawHeaders) -> bool:
    """Whether the fields' content-length is invalid or conflicting (a malformed message's
    scan stops at its first problem; this one reads them all)."""
    length: int | None = None
    for name, value in headers:
        if name == CONTENT_LENGTH:
            length = _content_length(value, length)
            if length < 0:
                return True
    return False


def _content_length(value: bytes, before: int | None) -> int:
    """RFC 9110 §8.6: 1*DIGIT, and a repeated field must agree; -1 if it is not so."""
    if not value.isdigit():
        return -1
    length = int(value)
    return length if before is None or before == length else -1
