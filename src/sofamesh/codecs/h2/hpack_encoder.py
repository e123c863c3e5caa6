"""HPACK (RFC 7541) for the lean codec, our side: a cheap encoder.

It never Huffman-codes, indexes static matches, adds fields to its own dynamic
table, and remembers its last few blocks (see `compression.py`, whose table
size, entry overhead and block cache bounds it shares with the decoder).
"""

from __future__ import annotations

from collections import deque

from sofamesh.codecs.h2.compression import (
    _BLOCK_CACHE_ENTRIES,
    _BLOCK_CACHE_OCTETS,
    _ENTRY_OVERHEAD,
    DEFAULT_TABLE_SIZE,
    STATIC,
    RawHeaders,
)

_NEVER_INDEXED = frozenset({b"authorization", b"proxy-authorization"})
_NOT_INDEXED = frozenset({b"grpc-timeout"})  # a new value per request: indexing only churns
_STATIC_FULL = {pair: i + 1 for i, pair in reversed(list(enumerate(STATIC)))}
_STATIC_NAME = {name: i + 1 for i, (name, _) in reversed(list(enumerate(STATIC)))}
_INDEXED = [bytes((0x80 | i,)) for i in range(0x7F)]  # an indexed field of one octet
_STATIC_INDEXED = {field: _INDEXED[i] for field, i in _STATIC_FULL.items()}


def encode_integer(value: int, prefix: int, first: int) -> bytes:
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes((first | value,))
    out = bytearray((first | mask,))
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    n = len(data)
    return (bytes((n,)) if n < 0x7F else encode_integer(n, 7, 0)) + data


class HeaderEncoder:
    """Our HPACK context towards the peer: static matches, then our own dynamic table."""

    __slots__ = (
        "_blocks",
        "_entries",
        "_inserted",
        "_max",
        "_pending_update",
        "_size",
        "_table",
        "_version",
    )

    def __init__(self) -> None:
        # fields -> (their block, the table version it was coded against)
        self._blocks: dict[tuple[tuple[bytes, bytes], ...], tuple[bytes, int]] = {}
        self._version = 0  # changes with every change of the table
        self._max = DEFAULT_TABLE_SIZE
        self._table: deque[tuple[bytes, bytes]] = deque()  # oldest at the right
        self._entries: dict[tuple[bytes, bytes], int] = {}  # field -> its insertion number
        self._inserted = 0
        self._size = 0
        self._pending_update: int | None = None

    def set_max_table_size(self, peer_setting: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE: use at most that (and at most the default)."""
        size = min(peer_setting, DEFAULT_TABLE_SIZE)
        if size != self._max:
            self._version += 1
            self._max = size
            # One update with the final size is enough: our own table was evicted at
            # each change, and the peer evicts its older entries before any of ours.
            self._pending_update = size
            self._evict()

    def encode(self, headers: RawHeaders) -> bytes:
        if self._pending_update is not None:
            return self._encode(headers)
        if headers and headers[-1][0] in _NOT_INDEXED:  # a deadline last: the rest repeats
            return self._remembered(headers[:-1]) + self._literal(headers[-1])
        known = self._blocks.get(tuple(headers))  # `_remembered`'s hit, inline
        if known is not None and known[1] == self._version:
            return known[0]
        return self._remembered(headers)

    def _remembered(self, headers: RawHeaders) -> bytes:
        key = tuple(headers)
        known = self._blocks.get(key)
        version = self._version
        if known is not None and known[1] == version:
            return known[0]
        block = self._encode(headers)
        if version == self._version and len(block) <= _BLOCK_CACHE_OCTETS:
            if len(self._blocks) >= _BLOCK_CACHE_ENTRIES:
                self._blocks.clear()
            self._blocks[key] = (block, version)
        return block

    def _encode(self, headers: RawHeaders) -> bytes:
        out = bytearray()
        if self._pending_update is not None:
            out += encode_integer(self._pending_update, 5, 0x20)
            self._pending_update = None
        entries, static = self._entries, _STATIC_INDEXED
        for field in headers:
            code = static.get(field)
            if code is not None:
                out += code
                continue
            seq = entries.get(field)
            if seq is not None:
                index = 62 + self._inserted - 1 - seq
                out += _INDEXED[index] if index < 0x7F else encode_integer(index, 7, 0x80)
                continue
            out += self._literal(field)
        return bytes(out)

    def _literal(self, field: tuple[bytes, bytes]) -> bytes:
        name, value = field
        if name in _NEVER_INDEXED:
            first, prefix = 0x10, 4
        elif name in _NOT_INDEXED:
            first, prefix = 0x00, 4
        else:
            first, prefix = 0x40, 6
            self._add(field)
        index = _STATIC_NAME.get(name)
        head = encode_integer(index, prefix, first) if index else bytes((first,)) + _string(name)
        return head + _string(value)

    def _add(self, field: tuple[bytes, bytes]) -> None:
        self._version += 1
        size = len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        if size > self._max:
            self._table.clear()
            self._entries.clear()
            self._size = 0
            return
        self._table.appendleft(field)
        self._entries[field] = self._inserted
        self._inserted += 1
        self._size += size
        self._evict()

    def _evict(self) -> None:
        table, entries = self._table, self._entries
        while self._size > self._max:
            field = table.pop()
            self._size -= len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
            # A field added twice has one entry per copy; the dict names the newest.
            if entries.get(field) == self._inserted - 1 - len(table):
                del entries[field]
