"""Requests relayed as bytes: a caller's field lines, kept as they came for the next hop.

A plain request (one `fast.split_request` takes, with a clean origin-form target) comes
out of the server codec as a `RelayedRequest`: its field lines less those a proxy drops
(`FORWARD_DROP`: hop-by-hop, RFC 9110 §7.6.1, and the mesh's own, which the mesh writes
afresh) are kept as one `bytes`, cut out by one `re.split` whose captures also give the
framing and the few fields the mesh reads (Host, the service, caller and deadline
fields: `picked`). What decides still reads the bytes before anything is kept: the
request line by the fast path's regex, the whole message by llhttp (C callbacks only, no
Python frame a message), the framing by the fast path's rules (exactly one Host, at most
one Content-Length of digits, Connection only `close` or `keep-alive`, no
Transfer-Encoding, TE, Expect or Upgrade); anything else goes the fast path or h11, as
before. Reading `headers` parses them exactly as `split_request` does.

    GET /path HTTP/1.1 CRLF              request line   -> written as it came
    Host: svc CRLF                       kept lines     -> copied as they are (Host too)
    Accept: */* CRLF
    Connection: keep-alive CRLF          dropped lines  -> skipped; the writer adds the
    X-Sofamesh-Caller: forged CRLF                         mesh's fields and framing
    CRLF

`forward` makes the upstream copy the mapping sends: the request line, the kept lines
and the mesh's fields, one `bytes` for the writer. What goes out differs from parsing
and writing again only in the spelling of the kept lines (names' case, OWS: RFC 9110
§5.1, §5.5); tests/codecs/test_http1_relayed_request.py holds the two to that.
"""

from __future__ import annotations

import re
from typing import Any

from sofamesh.codecs.http1 import fast, paths
from sofamesh.codecs.http1.limits import Http1Limits
from sofamesh.codecs.http1.messages import PROXY_DROP, HeaderList, HttpRequest, ParsedFields
from sofamesh.codecs.http1.relayed import MEMO_BYTES, ResponseCheck, carries_any, first_value
from sofamesh.model import CALLER_HEADER, SERVICE_HEADER, TIMEOUT_HEADER

MESH_FIELDS = frozenset(h.encode() for h in (SERVICE_HEADER, CALLER_HEADER, TIMEOUT_HEADER))
FORWARD_DROP = PROXY_DROP | MESH_FIELDS
"""The fields a forwarded request never carries as the caller sent them."""
TIMEOUT_FIELD = TIMEOUT_HEADER.encode()
_TIMEOUT_LINE = TIMEOUT_FIELD + b": "

# Every field line the split skips, from the CRLF before it to the CRLF ending it, its
# name and value captured (llhttp allows no whitespace before the colon, nor a CR in a
# value): the dropped ones and those that make the fast path defer. Host lines, kept, are
# found by a second scan.
_SKIPPED = re.compile(
    rb"\r\n(?=[XxCcKkPpTtUuEe])(x-sofamesh-(?:service|caller|timeout-ms)"
    rb"|c(?:on(?:nection|tent-length))|keep-alive|proxy-(?:connection|authenticate|authorization)"
    rb"|t(?:e|railer|ransfer-encoding)|upgrade|expect):([^\r]*)",
    re.IGNORECASE,
)
_HOSTS = re.compile(rb"\r\nhost:([^\r]*)", re.IGNORECASE)
_SERVICE, _CALLER, _TIMEOUT, _LENGTH, _CONNECTION, _DEFER, _DROP = range(1, 8)
_KINDS = {
    b"x-sofamesh-service": _SERVICE,
    b"x-sofamesh-caller": _CALLER,
    b"x-sofamesh-timeout-ms": _TIMEOUT,
    b"content-length": _LENGTH,
    b"connection": _CONNECTION,
    **dict.fromkeys((b"transfer-encoding", b"te", b"upgrade", b"expect"), _DEFER),
    **dict.fromkeys(
        (b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization"), _DROP
    ),
    b"trailer": _DROP,
}
_OWS = b" \t"
_HEADERS: Any = HttpRequest.__dict__["headers"]  # the slot the `headers` property fills
_NEW = HttpRequest.__new__

Picked = tuple[bytes | None, bytes | None, bytes | None, bytes | None]
"""The first Host, service, caller and deadline values (OWS trimmed), or None each."""


class RequestCheck(ResponseCheck):
    """llhttp's check of one connection's relayed requests (`ResponseCheck`'s rules)."""

    __slots__ = ()

    def _new_parser(self) -> Any:
        return fast._REQUEST_PARSER(self)


class RelayedRequest(HttpRequest):
    """A caller's request whose field lines are parsed only when something reads them.

    `picked` holds what the mesh reads of them and `kept` the lines to forward, both until
    anything reads or sets `headers` (`picked` is None from then on); `relay`, on an
    upstream copy (`forward`), the request line and field lines to write, cleared the same
    way (its `headers` then hold the caller's fields less `FORWARD_DROP`, and `added`).
    """

    __slots__ = ("_added", "_head", "_line_end", "_origin", "_timeout", "kept", "picked", "relay")

    _head: bytes | None  # the head as received, until parsed
    _line_end: int  # where its field lines begin
    _origin: tuple[str, str]  # the request line `_head` holds
    _added: HeaderList | None  # on an upstream copy: the mesh's fields,
    _timeout: bytes | None  # and the deadline's
    kept: bytes
    picked: Picked | None
    relay: bytes | None

    @property
    def headers(self) -> HeaderList:
        head = self._head
        if head is not None:  # first read: the fields `split_request` would have given
            self._head = self.relay = self.picked = None
            fields = fast._llhttp_fields(fast._REQUEST_PARSER, head, self._line_end, len(head) - 4)
            assert fields is not None  # llhttp took this head when it was relayed
            if self._added is not None:  # an upstream copy: as the mapping would make it
                fields = ParsedFields([f for f in fields if f[0] not in FORWARD_DROP])
                fields += self._added
                if self._timeout is not None:
                    fields.append((TIMEOUT_FIELD, self._timeout))
                fields.checked = True  # the mapping checked the values it added
            _HEADERS.__set__(self, fields)
        got: HeaderList = _HEADERS.__get__(self)
        return got

    @headers.setter
    def headers(self, fields: HeaderList) -> None:
        self._head = self.relay = self.picked = None
        _HEADERS.__set__(self, fields)

    def header(self, name: bytes) -> bytes | None:
        """The first value of `name` (lowercase), as `headers` would give it; on the caller's
        request, read from the head without parsing it (`relayed.first_value`)."""
        head = self._head
        if head is None or self._added is not None:  # an upstream copy's fields are rebuilt
            return super().header(name)
        return first_value(head, self._line_end, name)

    def carries_any(self, names: frozenset[str]) -> bool | None:
        """Whether the caller's request carries any of the fields `names` (lowercase), read
        from the head without parsing it; None where `headers` must tell (`carries_any`)."""
        head = self._head
        if head is None or self._added is not None:
            return None
        return carries_any(head, self._line_end, names)

    def forward(
        self, method: str, target: str, lines: bytes, added: HeaderList, timeout: bytes | None
    ) -> RelayedRequest | None:
        """The upstream copy: this request's kept lines, then `lines` (the mesh's fields,
        which `added` lists, never changed) and the deadline's field if `timeout`; None once
        `headers` were read or set, or for a request line other than the one received."""
        head = self._head
        if head is None or self._origin != (method, target):
            return None
        up = _made(method, target, self.body, self.stream_threshold, head, self._line_end)
        up._added, up._timeout = added, timeout
        line = head[: self._line_end]
        if timeout is None:
            up.relay = b"".join((line, self.kept, lines))
        else:
            up.relay = b"".join((line, self.kept, lines, _TIMEOUT_LINE, timeout, b"\r\n"))
        return up

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HttpRequest):
            return NotImplemented
        return (
            self.method,
            self.target,
            self.headers,
            self.body,
            self.http_version,
            self.stream_threshold,
            self.stream,
        ) == (
            other.method,
            other.target,
            other.headers,
            other.body,
            other.http_version,
            other.stream_threshold,
            other.stream,
        )

    __hash__ = None


def split_request(
    buf: bytes, limits: Http1Limits, check: RequestCheck
) -> tuple[RelayedRequest, bool, int] | None:
    """The plain request at the start of `buf` as a `RelayedRequest`, whether it asks to
    close, and the bytes it used; None for anything `fast.split_request` should judge.

    A head byte-identical to the connection's last one relayed (`RequestCheck.last`: a
    client sends its requests alike) was read and checked whole then, and identical bytes
    read alike: only its body's length is checked, against the Content-Length read then.
    Any other head is read in full and, if relayed and at most `MEMO_BYTES` long,
    remembered in the last one's place.
    """
    picked: Picked
    last = check.last
    if last is not None and buf.startswith(last[0]):
        head, method, target, start, kept, picked, length, close = last
        stop = len(head) + max(length, 0)
        if length > limits.stream_threshold > 0 or length > limits.max_body_size:
            return None
        if stop > len(buf):
            return None  # the body still arriving: the fast path waits, as before
        request = _made(method, target, buf[len(head) : stop], limits.stream_threshold, head, start)
        request.kept, request.picked = kept, picked
        return request, close, stop
    end = buf.find(fast._HEAD_END, 0, limits.max_header_bytes + 4)
    line = None if end < 0 else fast._REQUEST_LINE.match(buf, 0, end + 2)
    if line is None:
        return None
    start = line.end()
    block = buf[start - 2 : end + 2]  # the field lines, each after a CRLF
    lines = limits.max_headers + 1  # a line takes four bytes at least ("x:" CRLF)
    if len(block) > 4 * lines and block.count(b"\r\n") > lines:
        return None
    hosts = _HOSTS.findall(block)
    if len(hosts) != 1:
        return None  # h11 answers a missing or repeated Host (400)
    pieces = _SKIPPED.split(block)  # kept, name, value, kept, ..., kept
    if len(pieces) == 1:  # nothing to skip: no framing, no mesh field
        length, close, picked = -1, False, (hosts[0].strip(_OWS), None, None, None)
        kept = block[2:]  # the block's first CRLF ends the request line
    else:
        read = _read(pieces, hosts[0].strip(_OWS))
        if read is None:
            return None
        length, close, picked = read
        kept = b"".join(pieces[::3])[2:]
    if line.group(1) == b"CONNECT":
        return None  # h11 answers a tunnel (501)
    target = line.group(2).decode("latin-1")
    stop = end + 4 + max(length, 0)
    if (
        length > limits.stream_threshold > 0
        or length > limits.max_body_size
        or stop > len(buf)
        or paths.CLEAN.fullmatch(target) is None
        or not check.passes(buf[:stop])
    ):
        return None  # a body to stream, too large or still arriving, a target to normalise,
        # or refused by llhttp: the fast path and h11 decide
    method, head = line.group(1).decode("latin-1"), buf[: end + 4]
    # A head that closes is not remembered (llhttp's parser takes nothing after it, so a
    # repeat must be refused as it would be read), and clears the one before.
    if close:
        check.last = None
    elif len(head) <= MEMO_BYTES:
        check.last = (head, method, target, start, kept, picked, length, close)
    request = _made(method, target, buf[end + 4 : stop], limits.stream_threshold, head, start)
    request.kept, request.picked = kept, picked
    return request, close, stop


def _made(
    method: str, target: str, body: bytes, threshold: int, head: bytes, line_end: int
) -> RelayedRequest:
    """A `RelayedRequest` of `head` (unread), without a call through the class (which costs
    a third more: `type.__call__` runs `__init__` in an eval loop of its own)."""
    request: RelayedRequest = _NEW(RelayedRequest)
    request.method, request.target, request.body = method, target, body
    request.http_version, request.stream_threshold, request.stream = "1.1", threshold, None
    request._head, request._line_end, request._origin = head, line_end, (method, target)
    request._added = request._timeout = request.relay = None
    request.kept, request.picked = b"", None
    return request


def _read(pieces: list[bytes], host: bytes) -> tuple[int, bool, Picked] | None:
    """(Content-Length or -1, whether Connection says close, `picked`) from the skipped
    fields; None where the fast path defers (see `fast._framing`)."""
    length, close = -1, False
    picked: list[bytes | None] = [host, None, None, None]
    for i in range(1, len(pieces), 3):
        kind = _KINDS[pieces[i].lower()]
        if kind >= _DROP:
            continue
        value = pieces[i + 1].strip(_OWS)
        if kind <= _TIMEOUT:
            if picked[kind] is None:
                picked[kind] = value
        elif kind == _LENGTH:
            if length >= 0 or len(value) > 18 or not value.isdigit():
                return None
            length = int(value)
        elif kind == _CONNECTION:
            token = value.lower()
            if token == b"close":
                close = True
            elif token != b"keep-alive":
                return None
        else:
            return None  # Transfer-Encoding, TE, Expect, Upgrade: h11's judgement
    return length, close, (picked[0], picked[1], picked[2], picked[3])
