"""The header rules that make a request or response malformed (RFC 9113 §8.1.1, §8.2.2, §8.3).

Both codecs check these themselves (h2's own validation turns a bad stream
into a connection error); a malformed stream is reset, its neighbours live on.
"""

from __future__ import annotations

from sofamesh.codecs.h2.events import RawHeaders

# RFC 9113 §8.2.2: connection-specific fields are malformed in HTTP/2.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority"})


def malformed_request(headers: RawHeaders) -> str:
    """Why a request's header block is malformed (RFC 9113 §8.3.1), or ''."""
    seen: set[bytes] = set()
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular or name in seen or name not in _REQUEST_PSEUDO:
                return f"pseudo-header {name!r} misplaced, repeated or unknown"
            seen.add(name)
        else:
            regular = True
            if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
                return f"connection-specific field {name!r}"
            if name.lower() != name:
                return f"uppercase field name {name!r}"
    if b":method" not in seen or b":path" not in seen or b":scheme" not in seen:
        return "request lacks :method, :scheme or :path"
    return ""


def malformed_response(headers: RawHeaders) -> str:
    if not headers or headers[0][0] != b":status" or not headers[0][1].isdigit():
        return "response lacks a leading :status"
    return ""
