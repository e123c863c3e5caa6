"""Buffered HTTP messages and the header helpers the mesh needs around them.

Header names are lowercase bytes, as h11 hands them over, and values are the
bytes that were on the wire; `headers_to_neutral` decodes them as latin-1,
which maps each byte to one code point and back without loss (RFC 9110 §5.5
treats non-ASCII field bytes as opaque).
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from sofamesh.model import Headers

HeaderList = list[tuple[bytes, bytes]]

# Fields the writer never copies from a message: it frames what it sends itself.
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})


class ParsedFields(list[tuple[bytes, bytes]]):
    """A message's fields as the fast path read and checked them, and whether they still are.

    `checked` is true while the list holds exactly what the parser produced from bytes it
    validated (each name a token, each value free of controls but HTAB, RFC 9110 §5.5):
    any change to the list clears it. The writer then writes these fields without checking
    them again, with the same code, so what goes out is what was checked, byte for byte.
    """

    __slots__ = ("checked",)

    checked: bool

    def __setitem__(self, index: Any, value: Any) -> None:
        self.checked = False
        super().__setitem__(index, value)

    def __delitem__(self, index: Any) -> None:
        self.checked = False
        super().__delitem__(index)

    def __iadd__(self, other: Any) -> ParsedFields:  # type: ignore[override,misc]
        self.checked = False
        return super().__iadd__(other)

    def __imul__(self, n: Any) -> ParsedFields:  # type: ignore[misc]
        self.checked = False
        return super().__imul__(n)

    def append(self, item: tuple[bytes, bytes]) -> None:
        self.checked = False
        super().append(item)

    def extend(self, items: Any) -> None:
        self.checked = False
        super().extend(items)

    def insert(self, index: Any, item: tuple[bytes, bytes]) -> None:
        self.checked = False
        super().insert(index, item)

    def remove(self, item: tuple[bytes, bytes]) -> None:
        self.checked = False
        super().remove(item)

    def pop(self, index: Any = -1) -> tuple[bytes, bytes]:
        self.checked = False
        return super().pop(index)

    def clear(self) -> None:
        self.checked = False
        super().clear()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self.checked = False
        super().sort(*args, **kwargs)

    def reverse(self) -> None:
        self.checked = False
        super().reverse()


def checked(fields: HeaderList) -> bool:
    """Whether `fields` are unchanged parser output the writer need not check again."""
    return type(fields) is ParsedFields and fields.checked


class BodyStream(Protocol):
    """A body too large to buffer, read piece by piece as its reader asks.

    `length` is the body's Content-Length, None when it is unknown (chunked
    or delimited by the connection's close). `receive` returns the next
    piece, `b""` once the body is whole, and raises when it cannot be
    whole (the sender failed mid-body). Whoever holds the message must
    `aclose` the stream, read or not.
    """

    length: int | None

    async def receive(self) -> bytes: ...

    async def aclose(self) -> None: ...


@attrs.define(slots=True, eq=True)
class HttpRequest:
    """One request with its whole body (buffered, up to a limit), or its body as a stream.

    `target` is the request-target as sent (origin-form `/path?query` in
    practice); `headers` keeps order and repeats.
    """

    method: str
    target: str
    headers: HeaderList = attrs.field(factory=list)
    body: bytes = b""
    http_version: str = "1.1"
    # The listener it came on takes a response body above this many bytes as a stream
    # (`HttpResponse.stream`); 0: every response is buffered.
    stream_threshold: int = 0
    # A body too large to buffer (then `body` is empty); see `BodyStream`.
    stream: BodyStream | None = None

    def header(self, name: bytes) -> bytes | None:
        """The first value of `name` (lowercase), or None."""
        return _first(self.headers, name)


@attrs.define(slots=True, eq=True)
class HttpResponse:
    """One response with its whole body, or its body as a stream.

    An empty `reason` means the standard phrase.
    """

    status: int
    headers: HeaderList = attrs.field(factory=list)
    body: bytes = b""
    reason: bytes = b""
    # A body too large to buffer (then `body` is empty); see `BodyStream`.
    stream: BodyStream | None = None

    def header(self, name: bytes) -> bytes | None:
        """The first value of `name` (lowercase), or None."""
        return _first(self.headers, name)


def _first(headers: HeaderList, name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def headers_to_neutral(headers: HeaderList) -> Headers:
    """Wire headers (lowercase names, as the codecs produce them) to the neutral model."""
    return Headers.from_lower([(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])


def headers_from_neutral(headers: Headers) -> HeaderList:
    """Neutral headers to wire headers; raises UnicodeEncodeError beyond latin-1."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


# RFC 9110 §7.6.1: these describe one connection, not the message, so a proxy
# must not forward them (RFC 9112 §7.1 adds Transfer-Encoding; Keep-Alive and
# Proxy-Connection are the HTTP/1.0-era forms listed by RFC 9110 §7.6.1 too).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


# What a proxy drops besides `HOP_BY_HOP` (RFC 9110 §11.7.1: proxy credentials are for it).
PROXY_DROP = HOP_BY_HOP | {b"proxy-authenticate", b"proxy-authorization", b"content-length"}


def strip_hop_by_hop(headers: HeaderList) -> HeaderList:
    """A copy of `headers` without hop-by-hop fields, for forwarding.

    Removes the fixed set above, every `proxy-*` field, and every field the
    Connection header names (RFC 9110 §7.6.1: "a proxy or gateway MUST ...
    remove any header fields listed in the Connection header field").
    """
    drop = HOP_BY_HOP
    for name, value in headers:
        if name == b"connection":
            drop = drop | _connection_options(value)
    return [(k, v) for k, v in headers if k not in drop and not k.startswith(b"proxy-")]


def _connection_options(value: bytes) -> frozenset[bytes]:
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


# Connection options a message may not use to remove these fields: the
# message's own framing and target depend on them (Host, RFC 9112 §3.2).
_KEPT_OPTIONS = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


def drop_connection_options(headers: HeaderList) -> HeaderList:
    """`headers` without the fields its Connection header names (RFC 9110 §7.6.1).

    They describe the hop the message arrived on, so nothing beyond this
    codec may see them: a proxy that forwarded them would let a client hide
    or inject per-connection fields at the next hop. The standard hop-by-hop
    fields themselves are left for `strip_hop_by_hop` (the Connection field
    still says whether to close).
    """
    named: frozenset[bytes] = frozenset()
    for name, value in headers:
        if name == b"connection":
            named = named | _connection_options(value)
    named = named - _KEPT_OPTIONS - {b"close", b"keep-alive"}
    if not named:
        return headers
    return [(k, v) for k, v in headers if k not in named]
