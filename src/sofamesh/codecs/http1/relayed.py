"""Responses relayed as bytes: the field lines a proxy forwards, kept as they came.

A plain upstream response (one `fast.split_response` takes) that nothing reads field by
field goes back to the caller as its own field lines less the hop-by-hop ones (RFC 9110
§7.6.1: `messages.PROXY_DROP`), with the framing the writer always writes (Content-Length
of the body in hand, and `connection: close` when this hop closes). What decides still
reads the bytes before anything is kept: the status line by the fast path's regex, the
field lines by llhttp (or `fast._FIELDS` without the speedups), and the framing fields by
the fast path's rules (one Content-Length of digits, Connection only `close` or
`keep-alive`, no Transfer-Encoding or Upgrade); anything else is left to the fast path
and h11, as before. Reading `headers` parses them exactly as `split_response` does, and
the writer then writes them its usual way.

    HTTP/1.1 200 OK CRLF                  status line       -> written as the writer writes it
    Server: nginx CRLF                    kept lines        -> copied as they are
    Content-Length: 20 CRLF               hop-by-hop and    -> skipped; the writer adds
    Connection: keep-alive CRLF             framing lines        content-length (and close)
    CRLF
    body

What goes out differs from parsing and writing again only in the spelling of the lines it
keeps: their names' case and the OWS around values, as the upstream sent them (field
names are case-insensitive and OWS is no part of a value, RFC 9110 §5.1, §5.5).
tests/codecs/test_http1_relayed.py holds the two to that on generated responses.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sofamesh.codecs.http1 import fast
from sofamesh.codecs.http1.limits import Http1Limits
from sofamesh.codecs.http1.messages import PROXY_DROP, HeaderList, HttpResponse, ParsedFields

# Every field line a relayed head skips (`PROXY_DROP`), from the CRLF before it to the CRLF
# ending it, its name and value captured: llhttp allows no whitespace between a name and its
# colon, nor a CR in a value. `split` then gives the kept pieces and the skipped fields. The
# names are factored and a look-ahead passes over other lines at once (a fifth fewer
# instructions than the plain alternation).
_SKIPPED = re.compile(
    rb"\r\n(?=[CcKkPpTtUu])(c(?:on(?:nection|tent-length))|keep-alive"
    rb"|proxy-(?:connection|authenticate|authorization)|t(?:e|railer|ransfer-encoding)|upgrade)"
    rb":([^\r]*)",
    re.IGNORECASE,
)
_KEEP_ALIVE = frozenset({b" keep-alive", b" Keep-Alive", b"keep-alive", b"Keep-Alive"})
_CLOSE = frozenset({b" close", b" Close", b"close", b"Close"})
# llhttp, `fast`'s lazily bound module (an idle sidecar does not load it; None without the
# speedups extra, when nothing is relayed); its parser class is read from `fast` at each
# use, where the first use swaps it in for its stand-in.
if TYPE_CHECKING:
    import httptools as _httptools
else:
    _httptools = fast._httptools
MEMO_BYTES = 1024
"""The longest head a connection remembers as its last relayed one (`ResponseCheck.last`)."""
_HEADERS: Any = HttpResponse.__dict__["headers"]  # the slot the `headers` property fills
_NEW = HttpResponse.__new__


class RelayedResponse(HttpResponse):
    """An upstream response whose field lines are parsed only when something reads them.

    `relay` is the field lines to write when the writer finds the response unread: set by
    `forward` (the proxy's own strip of hop-by-hop fields, which the lines already lack),
    cleared by any read or assignment of `headers`.
    """

    __slots__ = ("_head", "_kept", "_line_end", "relay")

    _head: bytes | None  # the head as received, until parsed
    _line_end: int  # where its field lines begin
    _kept: bytes
    relay: bytes | None

    def __init__(
        self, status: int, reason: bytes, body: bytes, head: bytes, line_end: int, kept: bytes
    ) -> None:
        self.status, self.reason, self.body, self.stream = status, reason, body, None
        self._head, self._line_end, self._kept, self.relay = head, line_end, kept, None

    @property
    def headers(self) -> HeaderList:
        head = self._head
        if head is not None:  # first read: the fields `split_response` would have given
            self._head = None
            fields = _parse(head, self._line_end)
            if self.relay is not None:  # forwarded already: less what `forward` stood for
                fields = ParsedFields(k for k in fields if k[0] not in PROXY_DROP)
                fields.checked = True
                self.relay = None
            _HEADERS.__set__(self, fields)
        got: HeaderList = _HEADERS.__get__(self)
        return got

    @headers.setter
    def headers(self, fields: HeaderList) -> None:
        self._head = self.relay = None
        _HEADERS.__set__(self, fields)

    def header(self, name: bytes) -> bytes | None:
        """The first value of `name` (lowercase), as `headers` would give it, read from the
        head without parsing it: the response stays relayed as bytes."""
        head = self._head
        if head is None:
            return super().header(name)
        if self.relay is not None and name in PROXY_DROP:  # forwarded: `headers` lacks them
            return None
        return first_value(head, self._line_end, name)

    def forward(self) -> bool:
        """Drop the hop-by-hop fields for forwarding; False if the fields were read already
        (the caller strips them from `headers` then)."""
        if self._head is None:
            return False
        self.relay = self._kept
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HttpResponse):
            return NotImplemented
        return (self.status, self.headers, self.body, self.reason, self.stream) == (
            other.status,
            other.headers,
            other.body,
            other.reason,
            other.stream,
        )

    __hash__ = None


# The last head looked up in and its lowercase, as one pair: swapped whole, so a thread
# that reads it meanwhile sees one pair or the other, never a mix.
_lowered: list[tuple[bytes, bytes]] = [(b"", b"")]


def first_value(head: bytes, line_end: int, name: bytes) -> bytes | None:
    """The first value of the field `name` (lowercase, no colon) in a relayed head whose
    field lines begin at `line_end`, OWS trimmed; None if no line carries it.

    The relay took the head only after llhttp (or `fast._FIELDS`) checked every field line:
    `token:value` CRLF, no whitespace before the colon, no CR in a value, no obs-fold. So a
    line that starts with `name:` in any case is that field, nothing else matches, and the
    value ends at the line's CRLF: what parsing gives first, without a list of them all.
    The lowercase head is kept for the next look-up in the same head (an access log reads
    several fields of one message in a row).
    """
    pair = _lowered[0]  # `_lower`, inline: the access log's look-ups run it per field
    if pair[0] is not head:
        pair = _lowered[0] = (head, head.lower())
    at = pair[1].find(b"\r\n" + name + b":", line_end - 2)
    if at < 0:
        return None
    start = at + 3 + len(name)
    return head[start : head.index(b"\r\n", start)].strip(b" \t")


def _lower(head: bytes) -> bytes:
    """`head` in lowercase, kept for the next look-up in the same head."""
    pair = _lowered[0]
    if pair[0] is not head:
        pair = _lowered[0] = (head, head.lower())
    return pair[1]


_any_of: dict[frozenset[str], re.Pattern[bytes] | None] = {}  # by the set of names


def carries_any(head: bytes, line_end: int, names: frozenset[str]) -> bool | None:
    """Whether a relayed head carries any of the fields `names` (lowercase), found as
    `first_value` finds one, all in one search; None if a name is no field name (a colon
    or a character beyond ASCII in it), which the caller then looks for among the parsed
    fields. The names are the caller's constants: a set's search is compiled once."""
    if names in _any_of:
        pattern = _any_of[names]
    else:
        valid = all(n.isascii() and ":" not in n for n in names)
        alternatives = b"|".join(re.escape(n.encode()) for n in sorted(names))
        pattern = re.compile(b"\r\n(?:" + alternatives + b"):") if valid and names else None
        if len(_any_of) < 64:
            _any_of[names] = pattern
    if pattern is None:
        return None
    return pattern.search(_lower(head), line_end - 2) is not None


def _parse(head: bytes, line_end: int) -> ParsedFields:
    fields = fast._llhttp_fields(fast._RESPONSE_PARSER, head, line_end, len(head) - 4)
    assert fields is not None  # llhttp took this head when it was relayed
    return fields


class ResponseCheck:
    """llhttp's check of one connection's relayed responses, its parser kept between them.

    Each whole response (head and body) is fed to the parser, whose callbacks are C
    methods (no Python frame a message): the end of the message and a chunk header each
    empty a one-item list. The parser is kept only after a response it saw end exactly
    where the bytes end (the caller has matched its Content-Length to them); any doubt (a
    refusal, a message it did not see end, a chunked body) drops it, so no byte is ever
    read as part of another message.
    """

    __slots__ = ("_parser", "ended", "last", "on_chunk_header", "on_message_complete", "plain")

    def __init__(self) -> None:
        self._parser: Any = None
        # The last head relayed (at most `MEMO_BYTES`) and what was read of it: a head
        # byte-identical to it is the same verdict and the same fields (see `split_response`).
        self.last: tuple[Any, ...] | None = None
        self.ended = [False]  # emptied at the end of a message
        self.plain = [True]  # emptied by a chunk header
        self.on_message_complete = self.ended.clear
        self.on_chunk_header = self.plain.clear

    def passes(self, buf: bytes) -> bool:
        """Whether llhttp reads `buf` as one whole response, framed by its Content-Length."""
        parser, self._parser = self._parser or self._new_parser(), None
        try:
            parser.feed_data(buf)
        except (_httptools.HttpParserError, _httptools.HttpParserUpgrade):  # read if raised
            return self._reset()
        ended = self.ended
        if ended or not self.plain:
            return self._reset()  # not seen to end, or chunked: the parser is dropped
        ended.append(False)
        self._parser = parser
        return True

    def _new_parser(self) -> Any:
        return fast._RESPONSE_PARSER(self)

    def _reset(self) -> bool:
        self.ended[:] = [False]
        self.plain[:] = [True]
        return False


def split_response(
    buf: bytes, limits: Http1Limits, check: ResponseCheck
) -> tuple[RelayedResponse, bool, int] | None:
    """The plain response `buf` holds, whole and alone, as a `RelayedResponse` (not to a
    HEAD), and whether it closes the connection; None for anything else.

    A head byte-identical to the connection's last one relayed (`ResponseCheck.last`: an
    upstream answers alike but for the body, bar a Date that changes once a second) was read
    and checked whole then, and identical bytes read alike: only its body's length is
    checked, against the Content-Length read then. Any other head is read in full and, if
    relayed and at most `MEMO_BYTES` long, remembered in the last one's place.
    """
    last = check.last
    if last is not None and buf.startswith(last[0]):
        head, status, reason, start, kept, length, close = last
        if len(head) + length != len(buf) or length > limits.max_body_size:
            return None  # cut short or followed by more: the fast path decides, as before
        response: RelayedResponse = _NEW(RelayedResponse)
        response.status, response.reason, response.stream = status, reason, None
        response.body = buf[len(head) :]
        response._head, response._line_end, response._kept, response.relay = head, start, kept, None
        return response, close, len(buf)
    if not fast.LLHTTP:
        return None
    end = buf.find(fast._HEAD_END, 0, limits.max_header_bytes + 4)
    line = None if end < 0 else fast._STATUS_LINE.match(buf, 0, end + 2)
    if line is None:
        return None
    status, start = int(line.group(1)), line.end()
    block = buf[start - 2 : end + 2]  # the field lines, each after a CRLF
    if status in (204, 304):
        return None
    # A line takes four bytes at least ("x:" CRLF): a short head need not count its lines.
    lines = limits.max_headers + 1
    if len(block) > 4 * lines and block.count(b"\r\n") > lines:
        return None
    pieces = _SKIPPED.split(block)  # kept, name, value, kept, ..., kept
    framing = _framing(pieces)
    if framing is None:
        return None
    length, close = framing
    if length > limits.max_body_size or end + 4 + length != len(buf) or not check.passes(buf):
        return None  # too large, cut short, followed by bytes nobody asked for, or refused
    kept = b"".join(pieces[::3])[2:]
    body, head = buf[end + 4 :], buf[: end + 4]
    reason = line[2]
    # A head that closes is not remembered (llhttp's parser takes nothing after it, so a
    # repeat must be refused as it would be read), and clears the one before.
    if close:
        check.last = None
    elif len(head) <= MEMO_BYTES:
        check.last = (head, status, reason, start, kept, length, close)
    # Made without a call through the class (`type.__call__` runs `__init__` in an eval
    # loop of its own: a third more), as `__init__` would make it.
    response = _NEW(RelayedResponse)
    response.status, response.reason, response.body, response.stream = status, reason, body, None
    response._head, response._line_end, response._kept, response.relay = head, start, kept, None
    return response, close, len(buf)


def _framing(pieces: list[bytes]) -> tuple[int, bool] | None:
    """(Content-Length, whether the skipped fields say "Connection: close"); None where the
    fast path defers: no Content-Length, one over 18 digits or repeated (llhttp then checks
    that it is digits and that Transfer-Encoding is absent), a Connection field saying more
    than "close" or "keep-alive" (fields to drop: h11's path and `drop_connection_options`).
    """
    length, close = -1, False
    for i in range(1, len(pieces), 3):
        name, value = pieces[i], pieces[i + 1]
        if len(name) == 14:  # content-length
            if length >= 0 or (len(value) > 18 and len(value.strip(b" \t")) > 18):
                return None
            try:
                length = int(value)  # digits only, or llhttp refuses the head
            except ValueError:
                return None
        elif len(name) == 10 and name[0] in b"cC":  # connection, not keep-alive
            if value in _CLOSE:
                close = True
            elif value not in _KEEP_ALIVE:  # other spellings and OWS: the rule itself
                token = value.strip(b" \t").lower()
                if token == b"close":
                    close = True
                elif token != b"keep-alive":
                    return None
    return (length, close) if length >= 0 else None
