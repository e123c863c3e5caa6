"""The subset of DNS (RFC 1035) the sidecar's DNS proxy needs: queries in, answers out. Sans-IO.

    header (12 bytes, big-endian)          question (QDCOUNT of them)
    +------+-------+-------+-------+-------+-------+  +-----------------+-------+--------+
    |  ID  | FLAGS |QDCOUNT|ANCOUNT|NSCOUNT|ARCOUNT|  | name (labels, 0)| QTYPE | QCLASS |
    +------+-------+-------+-------+-------+-------+  +-----------------+-------+--------+
    FLAGS: QR(1) OPCODE(4) AA TC RD RA Z(3) RCODE(4)

A name is length-prefixed labels ending in a zero byte, or a 2-byte pointer (top bits
11) to an earlier name (RFC 1035 §4.1.4). Parsing is bounded: a message's size, a
label's 63 bytes, a name's 255 bytes, a name's label count and the pointers followed
are all limited, and anything past them is `DnsError`, never an exception of another kind.
"""

from __future__ import annotations

import struct

import attrs

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
OPCODE_MASK = 0x7800
RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
HEADER = struct.Struct("!HHHHHH")
MAX_MESSAGE = 65535  # a TCP message's length prefix is 16 bits
MAX_LABEL = 63
MAX_NAME = 255  # wire bytes, RFC 1035 §2.3.4
MAX_LABELS = 127  # a 255-byte name holds at most this many labels
MAX_POINTERS = 16
MAX_QUESTIONS = 4


class DnsError(ValueError):
    """The bytes are not a DNS message this codec reads (a remote protocol error)."""


@attrs.frozen
class Question:
    name: str  # dotted, without the trailing dot, as sent (DNS compares names case-blind)
    qtype: int
    qclass: int = CLASS_IN


@attrs.frozen
class Query:
    """A message's header and questions (what the proxy decides on)."""

    id: int
    flags: int
    questions: tuple[Question, ...]

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TC)


def parse_query(data: bytes, max_size: int = MAX_MESSAGE) -> Query:
    """The header and questions of `data`; `DnsError` if malformed or past the limits."""
    if len(data) > max_size:
        raise DnsError(f"message of {len(data)} bytes is over the limit of {max_size}")
    if len(data) < HEADER.size:
        raise DnsError(f"message of {len(data)} bytes is shorter than a header")
    ident, flags, qdcount, _an, _ns, _ar = HEADER.unpack_from(data)
    if qdcount > MAX_QUESTIONS:
        raise DnsError(f"{qdcount} questions: at most {MAX_QUESTIONS} are read")
    offset = HEADER.size
    questions = []
    for _ in range(qdcount):
        name, offset = read_name(data, offset)
        if offset + 4 > len(data):
            raise DnsError("question cut short")
        qtype, qclass = struct.unpack_from("!HH", data, offset)
        offset += 4
        questions.append(Question(name, qtype, qclass))
    return Query(ident, flags, tuple(questions))


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` and the offset just past it (pointers followed, bounded)."""
    labels: list[str] = []
    wire = 0
    end: int | None = None
    pointers = 0
    while True:
        if offset >= len(data):
            raise DnsError("name runs past the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsError("pointer cut short")
            pointers += 1
            if pointers > MAX_POINTERS:
                raise DnsError(f"more than {MAX_POINTERS} compression pointers")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise DnsError(f"label type {length >> 6:#x} is not supported")
        if length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        label = data[offset + 1 : offset + 1 + length]
        if len(label) < length:
            raise DnsError("label runs past the message")
        wire += length + 1
        if wire + 1 > MAX_NAME or len(labels) >= MAX_LABELS:
            raise DnsError(f"name longer than {MAX_NAME} bytes")
        labels.append(_text(label))
        offset += 1 + length


def _text(label: bytes) -> str:
    # Names are compared as ASCII; other bytes are kept, escaped, never mis-decoded.
    if all(0x21 <= b < 0x7F and b not in (0x2E, 0x5C) for b in label):
        return label.decode("ascii")
    return "".join(
        chr(b) if 0x21 <= b < 0x7F and b not in (0x2E, 0x5C) else f"\\{b:03d}" for b in label
    )


def encode_name(name: str) -> bytes:
    """`name` as labels (no compression); `DnsError` past the limits or for an odd label."""
    name = name.rstrip(".")
    out = bytearray()
    for label in name.split(".") if name else ():
        if not label or len(label) > MAX_LABEL or not label.isascii() or "\\" in label:
            raise DnsError(f"label {label[:80]!r} cannot be encoded")
        out += bytes([len(label)]) + label.encode("ascii")
    out += b"\x00"
    if len(out) > MAX_NAME:
        raise DnsError(f"name longer than {MAX_NAME} bytes")
    return bytes(out)


def build_query(ident: int, question: Question, *, recursion: bool = True) -> bytes:
    flags = FLAG_RD if recursion else 0
    head = HEADER.pack(ident, flags, 1, 0, 0, 0)
    return head + encode_name(question.name) + struct.pack("!HH", question.qtype, question.qclass)


def build_answer(
    query: Query, rcode: int = RCODE_NOERROR, addresses: tuple[bytes, ...] = (), ttl: int = 30
) -> bytes:
    """An authoritative answer to `query`'s first question: `addresses` (4 bytes each for A,
    16 for AAAA), none (NODATA) or an error `rcode`. The question is echoed."""
    flags = FLAG_QR | FLAG_AA | FLAG_RA | (query.flags & (FLAG_RD | OPCODE_MASK)) | rcode
    questions = query.questions[:1]
    head = HEADER.pack(query.id, flags, len(questions), len(addresses), 0, 0)
    body = bytearray()
    for q in questions:
        body += encode_name(q.name) + struct.pack("!HH", q.qtype, q.qclass)
    for addr in addresses:
        rtype = TYPE_A if len(addr) == 4 else TYPE_AAAA
        # The owner name is a pointer to the question's name, at offset 12 (0xc00c).
        body += struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(addr)) + addr
    return head + bytes(body)


def reply_id(data: bytes) -> int | None:
    """The ID of a reply (its first two bytes), or None if too short to be one."""
    return int.from_bytes(data[:2], "big") if len(data) >= HEADER.size else None


def is_truncated(data: bytes) -> bool:
    return len(data) >= HEADER.size and bool(int.from_bytes(data[2:4], "big") & FLAG_TC)
