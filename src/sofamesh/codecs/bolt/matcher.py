"""Recognise Bolt from the first bytes of a connection (protocol sniffing).

MOSN's Bolt matcher looks at the protocol byte only. This one also checks the bytes
that follow, because 0x01 and 0x02 alone are weak evidence: Bolt v1 needs a type byte
of 0-2 and a command code that fits it (0 or 2 for a response, 0 or 1 for a request);
Bolt v2 also needs ver1 of 1 or 2. Four bytes decide v1, five decide v2. Nothing else
the mesh serves starts this way: HTTP/1 starts with a letter, HTTP/2 with "PRI", TLS
with 0x16, Dubbo with 0xda 0xbb.
"""

from __future__ import annotations

import enum

from sofamesh.codecs.bolt.codes import CommandCode, CommandType


class Match(enum.Enum):
    """Whether a connection's first bytes are Bolt."""

    YES = "yes"
    NO = "no"
    NEED_MORE = "need_more"  # too few bytes to tell yet

    def __bool__(self) -> bool:
        return self is Match.YES


_REQUEST_CODES = (CommandCode.HEARTBEAT, CommandCode.RPC_REQUEST)
_RESPONSE_CODES = (CommandCode.HEARTBEAT, CommandCode.RPC_RESPONSE)


def match(prefix: bytes | bytearray | memoryview) -> Match:
    """Tell whether `prefix`, the first bytes a peer sent, starts a Bolt frame."""
    data = bytes(prefix[:5])
    if not data:
        return Match.NEED_MORE
    proto = data[0]
    if proto not in (1, 2):
        return Match.NO
    if proto == 2 and len(data) >= 2 and data[1] not in (1, 2):
        return Match.NO
    type_at = proto  # the type byte is at offset 1 in v1, 2 in v2
    if len(data) <= type_at:
        return Match.NEED_MORE
    typ = data[type_at]
    if typ > CommandType.REQUEST_ONEWAY:
        return Match.NO
    if len(data) > type_at + 1 and data[type_at + 1] != 0:
        return Match.NO  # the command code's high byte is always 0
    if len(data) < type_at + 3:
        return Match.NEED_MORE
    codes = _RESPONSE_CODES if typ == CommandType.RESPONSE else _REQUEST_CODES
    return Match.YES if data[type_at + 2] in codes else Match.NO
