"""The SOFA Bolt frame layout, and the one function that reads a fixed header.

All integers are big-endian; lengths and ids are signed (Java `short`/`int`).
Sources: sofa-bolt `RpcProtocol`, `RpcProtocolV2`, `RpcCommandDecoderV2`,
`RpcCommandEncoderV2`; sofa-bolt-node `lib/protocol/v1.js`, `v2.js`; and the captures
in peers/bolt/frames.txt (which the golden tests replay).

Bolt v1 request, oneway request, heartbeat (fixed header 22 bytes)::

    0     1     2     3     4     5     6     7     8     9     10    11    12    13
    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    |proto| type|  cmdcode  | ver2|       requestId       |codec|        timeout        |
    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    |  classLen |  headerLen|       contentLen      | className | header | content |
    +-----+-----+-----+-----+-----+-----+-----+-----+-----------+--------+---------+
    14          16          18                      22

Bolt v1 response, heartbeat ack (fixed header 20 bytes)::

    0     1     2     3     4     5     6     7     8     9     10    11
    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    |proto| type|  cmdcode  | ver2|       requestId       |codec| respstatus|
    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    |  classLen |  headerLen|       contentLen      | className | header | content |
    +-----+-----+-----+-----+-----+-----+-----+-----+-----------+--------+---------+
    12          14          16                      20

Bolt v2 inserts `ver1` after `proto` and `switch` after `codec`, and may end with a
CRC32 trailer. Request, oneway request, heartbeat (fixed header 24 bytes)::

    0     1     2     3     4     5     6     7     8     9     10    11
    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    |proto| ver1| type|  cmdcode  | ver2|       requestId       |codec|swtch|
    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    |        timeout        |  classLen |  headerLen|       contentLen      |
    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    12                      16          18          20                      24
    | className | header | content | CRC32 (4 bytes, if ver1 == 2 and switch bit 0) |
    +-----------+--------+---------+------------------------------------------------+

Bolt v2 response, heartbeat ack (fixed header 22 bytes): bytes 0-11 as above, then::

    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    | respstatus|  classLen |  headerLen|       contentLen      |
    +-----+-----+-----+-----+-----+-----+-----+-----+-----+-----+
    12          14          16          18                      22
    | className | header | content | CRC32 (4 bytes, if ver1 == 2 and switch bit 0) |
    +-----------+--------+---------+------------------------------------------------+

    proto      0x01 Bolt v1, 0x02 Bolt v2
    ver1       v2 only: 1 (same frames as v1 plus switch) or 2 (CRC-capable)
    type       0 response, 1 request, 2 oneway request
    cmdcode    0 heartbeat, 1 RPC request, 2 RPC response
    ver2       command version, always 1 in practice (passed through untouched)
    requestId  matches a response to its request; Java's counter wraps to negative
    codec      serializer of the content: 1 Hessian 2, 11 protobuf (see codes.Codec)
    switch     v2 only: bit 0 asks for the CRC32 trailer
    classLen   class-name bytes (e.g. com.alipay.sofa.rpc.core.request.SofaRequest)
    headerLen  header-map bytes (see headers.py)
    contentLen body bytes (Hessian, protobuf ...), forwarded untouched
    CRC32      zlib/IEEE CRC-32 of every preceding byte of the frame, as a 32-bit int

The CRC rule follows the Java reference (`RpcCommandDecoderV2.decode`): the trailer is
present only when ver1 == 2 *and* switch bit 0 is set; a Java client on a ver1 = 1
connection sets switch = 1 and sends no trailer. (sofa-bolt-node checks switch == 1 only.)
"""

from __future__ import annotations

import struct

from sofamesh.codecs.bolt.errors import (
    UnknownCommandTypeError,
    UnknownProtocolError,
    UnsupportedVersionError,
)

# proto type cmdcode ver2 requestId codec timeout|status classLen headerLen contentLen
V1_REQUEST = struct.Struct(">BBHBiBihhi")
V1_RESPONSE = struct.Struct(">BBHBiBHhhi")
# proto ver1 type cmdcode ver2 requestId codec switch timeout|status classLen headerLen contentLen
V2_REQUEST = struct.Struct(">BBBHBiBBihhi")
V2_RESPONSE = struct.Struct(">BBBHBiBBHhhi")
I32 = struct.Struct(">i")
U32 = struct.Struct(">I")

MAX_SHORT_LENGTH = 0x7FFF  # classLen and headerLen are Java shorts
MAX_INT_LENGTH = 0x7FFFFFFF  # contentLen is a Java int
CRC_SIZE = 4
MIN_FRAME_SIZE = V1_RESPONSE.size

# Offsets of the request id and the timeout in each protocol version.
REQUEST_ID_OFFSET = {1: 5, 2: 6}
TIMEOUT_OFFSET = {1: 10, 2: 12}

FixedHeader = tuple[int, int, int, int, int, int, int, int, int, int, int, int, int, int]
"""size, version, ver1, switch, type, cmdcode, ver2, requestId, codec,
timeout-or-status, classLen, headerLen, contentLen, crc trailer size."""


def _describe(byte: int) -> str:
    if 0x20 <= byte < 0x7F:
        return f"0x{byte:02x} ({chr(byte)!r}: plain text, perhaps HTTP)"
    if byte == 0x16:
        return "0x16 (a TLS handshake?)"
    if byte == 0xDA:
        return "0xda (Dubbo magic?)"
    return f"0x{byte:02x}"


def read_fixed_header(buf: bytes | bytearray, pos: int) -> FixedHeader | None:
    """Read the fixed header at `buf[pos:]`, or None if more bytes are needed.

    Raises the fatal errors that make the layout unknowable (protocol, ver1 or type
    byte) as soon as that byte arrives. Lengths are returned as read, possibly negative.
    """
    avail = len(buf) - pos
    if avail < 1:
        return None
    proto = buf[pos]
    if proto not in (1, 2):
        raise UnknownProtocolError(f"bolt: unknown protocol byte {_describe(proto)}")
    if proto == 2 and avail >= 2 and buf[pos + 1] not in (1, 2):
        raise UnsupportedVersionError(f"bolt v2: unsupported ver1 {buf[pos + 1]}")
    if avail <= proto:  # the type byte sits at offset 1 in v1, 2 in v2
        return None
    typ = buf[pos + proto]
    if typ > 2:
        raise UnknownCommandTypeError(f"bolt v{proto}: unknown command type {typ}")
    if proto == 1:
        layout = V1_RESPONSE if typ == 0 else V1_REQUEST
        if avail < layout.size:
            return None
        _, typ, cmd, ver2, rid, codec, extra, cl, hl, bl = layout.unpack_from(buf, pos)
        return layout.size, 1, 1, 0, typ, cmd, ver2, rid, codec, extra, cl, hl, bl, 0
    layout = V2_RESPONSE if typ == 0 else V2_REQUEST
    if avail < layout.size:
        return None
    _, ver1, typ, cmd, ver2, rid, codec, switch, extra, cl, hl, bl = layout.unpack_from(buf, pos)
    crc = CRC_SIZE if ver1 == 2 and switch & 1 else 0
    return layout.size, 2, ver1, switch, typ, cmd, ver2, rid, codec, extra, cl, hl, bl, crc
