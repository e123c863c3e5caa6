"""Recognise Dubbo from the first bytes of a connection (protocol sniffing).

A Dubbo frame starts with the magic 0xda 0xbb and, from a caller, a flag byte with the
request bit set. No other protocol the mesh serves starts with 0xda (HTTP/1 starts with
a letter, HTTP/2 with "PRI", TLS with 0x16, Bolt with 0x01 or 0x02).
"""

from __future__ import annotations

from sofamesh.codecs.bolt.matcher import Match
from sofamesh.codecs.dubbo.wire import FLAG_REQUEST, MAGIC_BYTES


def match(prefix: bytes | bytearray | memoryview) -> Match:
    """Tell whether `prefix`, the first bytes a caller sent, starts a Dubbo request."""
    data = bytes(prefix[:3])
    if data != MAGIC_BYTES[: len(data)]:
        return Match.YES if data[:2] == MAGIC_BYTES and data[2] & FLAG_REQUEST else Match.NO
    return Match.NEED_MORE
