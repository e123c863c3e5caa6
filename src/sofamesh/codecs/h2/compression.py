"""HPACK (RFC 7541) for the lean codec: a decoder bounded by the header list size (here), a
cheap encoder (`hpack_encoder.py`).

Representations, by the first bits of each field (RFC 7541 §6)::

    1xxxxxxx  indexed field                       index: 7-bit prefix integer
    01xxxxxx  literal, added to the dynamic table  name index: 6-bit prefix (0: literal name)
    001xxxxx  dynamic table size update           new size: 5-bit prefix
    0000xxxx  literal, not indexed                name index: 4-bit prefix
    0001xxxx  literal, never indexed              name index: 4-bit prefix
    string:   H|length (7-bit prefix), then the octets (Huffman-coded when H is set)

The decoder keeps the peer's dynamic table and counts every decoded field as
RFC 9113 §6.5.2 does (name + value + 32 octets): past `max_header_list_size`
it stops (`HeaderListTooLarge`), which bounds an "HPACK bomb" (a small block
of indexed references to one large entry) by what it would decode to. Huffman
strings are decoded by the `hpack` library's table-driven decoder and cached,
since peers send the same values over and over.

The encoder never Huffman-codes (a peer decodes plain strings for free and
bytes on loopback cost less than CPU); it indexes static matches, and adds
fields to its own dynamic table so repeated ones cost one octet, except
fields whose value changes with every request (`grpc-timeout`), which would
only churn both tables.

Both sides remember their last few header blocks (`_BLOCK_CACHE_ENTRIES` per
connection, blocks of at most `_BLOCK_CACHE_OCTETS`): a proxied call repeats
the same blocks (a client's request head, an upstream's response head and
trailers), and each costs a few microseconds per field to code again. A
block is a pure function of its bytes and the dynamic table, so a remembered
one is reused only while that holds: the decoder replays a block's table
insertions, and reuses a block that refers to the table only while the
table is unchanged since; the encoder reuses its output only while it has
inserted nothing and not resized.

Verdicts are remembered too (`decode_judged`, process-wide, `_JUDGED_ENTRIES`
blocks of at most `_JUDGED_OCTETS`): the fields of a request or response head
and what the codec's rules made of them (malformed or not, its
content-length), so a byte-identical head is neither decoded nor checked
again. Only a block that changed nothing in the table (no literal with
incremental indexing, no size update) is remembered, and one that read the
table only while the table is unchanged: anything else is not byte-stable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import count
from typing import Any, TypeVar

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

RawHeaders = list[tuple[bytes, bytes]]

STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
DEFAULT_TABLE_SIZE = 4096  # RFC 9113 §6.5.2: SETTINGS_HEADER_TABLE_SIZE's initial value
_ENTRY_OVERHEAD = 32
_BLOCK_CACHE_ENTRIES = 16
_BLOCK_CACHE_OCTETS = 1024
_HUFFMAN_CACHE_LIMIT = 4096
_JUDGED_ENTRIES = 256
_JUDGED_OCTETS = 2048
_CHANGED_TABLE = -2  # `HeaderDecoder._read`: the last block inserted or resized
V = TypeVar("V")


class CompressionError(Exception):
    """The header block cannot be decoded (RFC 9113 §4.3: COMPRESSION_ERROR)."""


class HeaderListTooLarge(Exception):
    """The decoded header list passed `max_header_list_size`."""


# (decoder's serial, block) -> (the table version the block read or -1, the header list limit
# it was decoded under, the judge, its fields, the judge's verdict):
# `HeaderDecoder.decode_judged`. Keyed by a serial, not the decoder, so that a closed
# connection's decoder is not kept alive by its entries (which wait for eviction).
_judged: dict[tuple[int, bytes], tuple[int, int, Any, tuple[tuple[bytes, bytes], ...], Any]] = {}
_serials = count()


class HeaderDecoder:
    """The peer's HPACK context: decodes one header block at a time, in order."""

    __slots__ = (
        "_blocks",
        "_cache",
        "_capacity",
        "_cycle",
        "_cycled",
        "_read",
        "_serial",
        "_size",
        "_table",
        "_version",
        "max_header_list_size",
        "max_table_size",
    )

    def __init__(self, max_header_list_size: int) -> None:
        self._serial = next(_serials)  # its key in `_judged`
        self.max_header_list_size = max_header_list_size
        self.max_table_size = DEFAULT_TABLE_SIZE  # what we advertise (the default)
        # The table's size now: the peer may shrink it below what we advertise with a
        # dynamic table size update, and that size bounds every later entry (RFC 7541 §4.2).
        self._capacity = DEFAULT_TABLE_SIZE
        self._table: deque[tuple[bytes, bytes]] = deque()
        self._size = 0
        self._cache: dict[bytes, bytes] = {}
        # block -> (fields, fields it added and their table size, the table version it
        # read or -1, the header list's size)
        self._blocks: dict[bytes, tuple[RawHeaders, RawHeaders, int, int, int]] = {}
        self._version = 0  # changes with every change of the table
        # What the last block decoded depended on: the table version it read, -1 if
        # nothing of the table, or _CHANGED_TABLE (it inserted or resized).
        self._read = _CHANGED_TABLE
        # The insertions of the remembered block replayed last, and the octets its replays
        # in a row have added, nothing else having changed the table meanwhile (`_replay`).
        self._cycle: RawHeaders | None = None
        self._cycled = 0

    def decode_judged(self, block: bytes, judge: Callable[[RawHeaders], V]) -> tuple[RawHeaders, V]:
        """`decode(block)` and `judge` (a pure function) of its fields; a block this decoder
        decoded and judged alike before, and remembered then, is neither decoded nor judged
        again (the fields come in a list of their own)."""
        key = (self._serial, block)
        known = _judged.get(key)
        if known is not None:
            read, limit, how, remembered, verdict = known
            if (
                (read == -1 or read == self._version)
                and how is judge
                and limit == self.max_header_list_size
            ):
                return list(remembered), verdict
        fields = self.decode(block)
        verdict = judge(fields)
        if self._read != _CHANGED_TABLE and len(block) <= _JUDGED_OCTETS:
            if len(_judged) >= _JUDGED_ENTRIES:
                del _judged[next(iter(_judged))]  # the oldest
            entry = (self._read, self.max_header_list_size, judge, tuple(fields), verdict)
            _judged[key] = entry
        return fields, verdict

    def decode(self, block: bytes) -> RawHeaders:
        """The fields of one complete header block; `CompressionError` if it is invalid."""
        known = self._blocks.get(block)
        if known is not None and (known[3] == -1 or known[3] == self._version):
            fields, added, added_size, read, total = known
            if total > self.max_header_list_size:
                raise HeaderListTooLarge(f"header list larger than {self.max_header_list_size}")
            self._read = read
            if added:
                # A replay that left the table as it was leaves the block's verdict valid
                # while the table stays so (its version); any other changed the table.
                self._read = self._version if self._replay(added, added_size) else _CHANGED_TABLE
            return list(fields)
        self._read = _CHANGED_TABLE  # until the block decoded
        try:
            return self._decode(block)
        except (IndexError, HPACKDecodingError) as exc:
            raise CompressionError(f"invalid header block: {exc}") from exc

    def _decode(self, block: bytes) -> RawHeaders:
        out: RawHeaders = []
        added: RawHeaders = []
        pos, end, total = 0, len(block), 0
        limit = self.max_header_list_size
        table = self._table
        version = self._version
        reads_table = resized = False  # reads_table: refers to a dynamic entry (or may)
        while pos < end:
            b = block[pos]
            if b & 0x80:
                index = b & 0x7F
                if 0 < index <= 61:  # the common case, inline: a static entry
                    field = STATIC[index - 1]
                    pos += 1
                elif 61 < index < 0x7F and index - 62 < len(table):
                    field = table[index - 62]
                    pos += 1
                    reads_table = True
                else:
                    index, pos = _integer(block, pos, 7)
                    field = self._field(index)
                    reads_table = True
            elif b & 0x40:
                reads_table = reads_table or b & 0x3F > 61
                field, pos = self._literal(block, pos, 6)
                self._add(field)
                added.append(field)
            elif b & 0x20:
                if out:  # RFC 7541 §4.2: only at the start of a block
                    raise CompressionError("dynamic table size update inside a header block")
                size, pos = _integer(block, pos, 5)
                self._resize(size)
                resized = True
                continue
            else:
                reads_table = reads_table or b & 0x0F == 0x0F
                field, pos = self._literal(block, pos, 4)
            total += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
            if total > limit:
                raise HeaderListTooLarge(f"header list larger than {limit} octets")
            out.append(field)
        read = version if reads_table else -1
        if end <= _BLOCK_CACHE_OCTETS and not resized and not (reads_table and added):
            self._remember(block, out, added, read, total)
        self._read = _CHANGED_TABLE if resized or added else read
        return out

    def _remember(
        self, block: bytes, fields: RawHeaders, added: RawHeaders, version: int, total: int
    ) -> None:
        blocks = self._blocks
        if len(blocks) >= _BLOCK_CACHE_ENTRIES:
            blocks.clear()
        size = sum(len(name) + len(value) for name, value in added) + _ENTRY_OVERHEAD * len(added)
        blocks[block] = (list(fields), added, size, version, total)

    def _field(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= 61:
            return STATIC[index - 1]
        dyn = index - 62
        if index == 0 or dyn >= len(self._table):
            raise CompressionError(f"header index {index} out of range")
        return self._table[dyn]

    def _literal(self, block: bytes, pos: int, prefix: int) -> tuple[tuple[bytes, bytes], int]:
        index, pos = _integer(block, pos, prefix)
        if index:
            name = self._field(index)[0]
        else:
            name, pos = self._string(block, pos)
        value, pos = self._string(block, pos)
        return (name, value), pos

    def _string(self, block: bytes, pos: int) -> tuple[bytes, int]:
        huffman = block[pos] & 0x80
        length, pos = _integer(block, pos, 7)
        end = pos + length
        if end > len(block):
            raise CompressionError("string runs past the end of the header block")
        raw = block[pos:end]
        if not huffman:
            return raw, end
        cache = self._cache
        text = cache.get(raw)
        if text is None:
            text = decode_huffman(raw)
            if len(cache) >= _HUFFMAN_CACHE_LIMIT:
                cache.clear()
            cache[raw] = text
        return text, end

    def _add(self, field: tuple[bytes, bytes]) -> None:
        size = len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        self._version += 1
        self._cycle = None
        if size > self._capacity:  # RFC 7541 §4.4: empties the table, adds nothing
            self._table.clear()
            self._size = 0
            return
        self._table.appendleft(field)
        self._size += size
        self._evict(self._capacity)

    def _replay(self, added: RawHeaders, size: int) -> bool:
        """A remembered block's insertions (`size` in the table) again, in order, evicting
        once (a response head from nginx, say, adds five literals every time). True if
        the table is left exactly as it was, and then it is not touched.

        The table holds the newest entries that fit its capacity. Once the same block's
        replays in a row, with no other change between them, have added more octets than
        the capacity, every entry comes from those replays: the table is the insertions'
        cycle, cut to fit, and one more replay of the cycle leaves the same entries in the
        same order (its insertions in front, as many octets evicted behind)."""
        if added is self._cycle and self._cycled > self._capacity:
            return True
        if size > self._capacity:  # one of them may empty the table: one at a time
            for field in added:
                self._add(field)
            return False
        self._version += 1
        self._table.extendleft(added)
        self._size += size
        self._evict(self._capacity)
        if added is self._cycle:
            self._cycled += size
        else:
            self._cycle, self._cycled = added, size
        return False

    def _resize(self, size: int) -> None:
        if size > self.max_table_size:
            raise CompressionError(f"table size {size} above the {self.max_table_size} allowed")
        self._version += 1
        self._cycle = None
        self._capacity = size
        self._evict(size)

    def _evict(self, limit: int) -> None:
        table = self._table
        while self._size > limit:
            name, value = table.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD


def _integer(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """RFC 7541 §5.1: a prefix integer at `pos`; returns it and the position after it."""
    mask = (1 << prefix) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:  # past 2**32: no field or table is that large
            raise CompressionError("HPACK integer too large")
