"""HTTP/2 frames on the wire (RFC 9113 §4.1, §6): the header layout and the frames we write.

Every frame starts with a 9-octet header::

    +-----------------------------------------------+
    |                 Length (24)                   |
    +---------------+---------------+---------------+
    |   Type (8)    |   Flags (8)   |
    +-+-------------+---------------+-------------------------------+
    |R|                 Stream Identifier (31)                      |
    +=+=============================================================+
    |                   Frame Payload (0...)                      ...
    +---------------------------------------------------------------+

The reader (`lean.py`) parses headers with one `struct` call; the writers
below build whole frames with one `pack` each.
"""

from __future__ import annotations

import struct

DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9
ALTSVC = 0xA  # RFC 7838 §4: ignored, but its origin must fit the frame

END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes (RFC 9113 §7)
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

# SETTINGS identifiers (RFC 9113 §6.5.2, RFC 8441 §3)
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
ENABLE_CONNECT_PROTOCOL = 0x8

MAX_FRAME_SIZE_DEFAULT = 16_384  # and the floor of SETTINGS_MAX_FRAME_SIZE

HEADER = struct.Struct(">HBBBL")  # length as 16 + 8 bits, type, flags, R + stream id
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")
STREAM_MASK = 0x7FFFFFFF


def header(length: int, ftype: int, flags: int, stream_id: int) -> bytes:
    return HEADER.pack(length >> 8, length & 0xFF, ftype, flags, stream_id)


def settings(values: dict[int, int]) -> bytes:
    payload = b"".join(_SETTING.pack(k, v) for k, v in values.items())
    return header(len(payload), SETTINGS, 0, 0) + payload


SETTINGS_ACK = header(0, SETTINGS, ACK, 0)


def ping_ack(opaque: bytes) -> bytes:
    return header(8, PING, ACK, 0) + opaque


def window_update(stream_id: int, increment: int) -> bytes:
    return header(4, WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def rst_stream(stream_id: int, error_code: int) -> bytes:
    return header(4, RST_STREAM, 0, stream_id) + _U32.pack(error_code)


def goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    return header(8 + len(debug), GOAWAY, 0, 0) + _GOAWAY.pack(last_stream_id, error_code) + debug


def header_block(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS, then CONTINUATION frames if `block` is larger than the peer's frame size."""
    flags = END_STREAM if end_stream else 0
    n = len(block)
    if n <= max_frame:  # `header` inline: three blocks a proxied call
        return HEADER.pack(n >> 8, n & 0xFF, HEADERS, flags | END_HEADERS, stream_id) + block
    parts = [header(max_frame, HEADERS, flags, stream_id), block[:max_frame]]
    for start in range(max_frame, len(block), max_frame):
        chunk = block[start : start + max_frame]
        last = start + max_frame >= len(block)
        parts += (header(len(chunk), CONTINUATION, END_HEADERS if last else 0, stream_id), chunk)
    return b"".join(parts)


def u32(payload: bytes, offset: int = 0) -> int:
    return int(_U32.unpack_from(payload, offset)[0])


def setting_pairs(payload: bytes) -> list[tuple[int, int]]:
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]
