"""The Bolt header map, as SOFARPC's `SimpleMapSerializer` writes it.

    +-----------+-----------+-------------+-------------+-----------+---
    | keyLen i32| key UTF-8 | valueLen i32| value UTF-8 | keyLen .. | ...
    +-----------+-----------+-------------+-------------+-----------+---

No count prefix: the map ends where the frame's headerLen says. Lengths are signed
big-endian ints. SOFARPC writes "" as length 0 and skips null keys and values; it reads
any negative length as null and drops entries whose key or value is null.
sofa-bolt-node writes a null value as length -1. An empty map is headerLen 0.

Parsing keeps null values as `None` (so a proxy can see what the peer sent) and drops
null keys, which no peer writes. Strings are decoded like Java's `new String(bytes,
UTF_8)`: invalid sequences become U+FFFD instead of failing the call.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from sofamesh.codecs.bolt.errors import HeaderMapError, LocalProtocolError

HeaderItems = tuple[tuple[str, str | None], ...]

DEFAULT_MAX_HEADER_ENTRIES = 256

_I32 = struct.Struct(">i")
_NULL = _I32.pack(-1)


def _span(data: bytes, off: int, end: int) -> tuple[int, int]:
    """Read one length-prefixed string at `off`: (length, offset of its bytes).

    Length is -1 for null. Checks the bytes exist before anything uses the length.
    """
    if end - off < 4:
        raise HeaderMapError(f"bolt header map: {end - off} stray bytes at offset {off}")
    (length,) = _I32.unpack_from(data, off)
    off += 4
    if length < 0:
        return -1, off
    if length > end - off:
        raise HeaderMapError(
            f"bolt header map: string of {length} bytes at offset {off - 4} "
            f"overruns the map ({end - off} bytes left)"
        )
    return length, off


def parse_header_map(data: bytes, max_entries: int = DEFAULT_MAX_HEADER_ENTRIES) -> HeaderItems:
    """Parse a header map into ordered `(key, value)` pairs; `value` is None for null."""
    items: list[tuple[str, str | None]] = []
    off, end, count = 0, len(data), 0
    while off < end:
        count += 1
        if count > max_entries:
            raise HeaderMapError(f"bolt header map: more than {max_entries} entries")
        klen, off = _span(data, off, end)
        kstart = off
        off += max(klen, 0)
        vlen, off = _span(data, off, end)
        value = None if vlen < 0 else data[off : off + vlen].decode("utf-8", "replace")
        off += max(vlen, 0)
        if klen >= 0:
            items.append((data[kstart : kstart + klen].decode("utf-8", "replace"), value))
    return tuple(items)


def pick_headers(
    data: bytes,
    wanted: Mapping[bytes, int],
    prefix: bytes,
    max_entries: int = DEFAULT_MAX_HEADER_ENTRIES,
) -> tuple[list[str | None], bool] | None:
    """`HeaderPicker(wanted, prefix).pick(data, max_entries)`."""
    return HeaderPicker(wanted, prefix).pick(data, max_entries)


class HeaderPicker:
    """A few headers' values without parsing the whole map: a proxy reads about five of a
    request's headers, and decoding every key and value costs it more than the rest of
    the frame. `wanted` maps lowercase key bytes to a slot of the answer; each slot gets
    the first non-null value of its key (keys compared ASCII case-insensitively; every
    wanted key and `prefix` is ASCII). `pick` also says whether a key with a non-null
    value starts with `prefix`, and gives None when the map is malformed
    (`parse_header_map` then names the problem).

    Made once per set of names: most keys of a request (trace ids) are told apart from
    the wanted ones by their length and first byte, without a copy or a lookup."""

    __slots__ = ("_firsts", "_lengths", "_prefix", "_size", "_wanted")

    def __init__(self, wanted: Mapping[bytes, int], prefix: bytes) -> None:
        self._wanted = dict(wanted)
        self._lengths = frozenset(map(len, wanted))
        self._size = max(wanted.values(), default=-1) + 1
        self._prefix = prefix
        self._firsts = prefix[:1] + prefix[:1].upper()  # what a key's first byte may be

    def pick(
        self, data: bytes, max_entries: int = DEFAULT_MAX_HEADER_ENTRIES
    ) -> tuple[list[str | None], bool] | None:
        values: list[str | None] = [None] * self._size
        wanted, lengths, prefix, firsts = self._wanted, self._lengths, self._prefix, self._firsts
        plen = len(prefix)
        flagged = False
        off, end, count = 0, len(data), 0
        unpack = _I32.unpack_from
        try:
            while off < end:
                count += 1
                (klen,) = unpack(data, off)
                key = off = off + 4
                if klen > 0:
                    off += klen
                (vlen,) = unpack(data, off)
                off += 4
                if klen >= 0 and vlen >= 0 and off + vlen <= end:
                    if klen in lengths:
                        slot = wanted.get(data[key : key + klen].lower())
                        if slot is not None and values[slot] is None:
                            values[slot] = data[off : off + vlen].decode("utf-8", "replace")
                    if (
                        klen >= plen
                        and (not plen or data[key] in firsts)
                        and data[key : key + plen].lower() == prefix
                    ):
                        flagged = True
                if vlen > 0:
                    off += vlen
        except struct.error:
            return None
        if off != end or count > max_entries:
            return None
        return values, flagged


def check_header_map(data: bytes, max_entries: int = DEFAULT_MAX_HEADER_ENTRIES) -> int:
    """Validate a header map's structure without decoding strings; return its entry count.

    The decoder runs this on every frame, so the loop skips over strings with bare
    arithmetic and leaves the error message to `_strict_walk` when anything is off.
    """
    off, end, count = 0, len(data), 0
    unpack = _I32.unpack_from
    while off < end:
        count += 1
        if count > max_entries or off + 8 > end:
            break
        (klen,) = unpack(data, off)
        off += 4 + (klen if klen > 0 else 0)
        if off + 4 > end:
            break
        (vlen,) = unpack(data, off)
        off += 4 + (vlen if vlen > 0 else 0)
    if off == end and count <= max_entries:
        return count
    return _strict_walk(data, max_entries)  # raises HeaderMapError, naming the problem


def _strict_walk(data: bytes, max_entries: int) -> int:
    off, end, count = 0, len(data), 0
    while off < end:
        count += 1
        if count > max_entries:
            raise HeaderMapError(f"bolt header map: more than {max_entries} entries")
        klen, off = _span(data, off, end)
        vlen, off = _span(data, off + max(klen, 0), end)
        off += max(vlen, 0)
    return count


def encode_header_map(
    headers: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
    *,
    keep_nulls: bool = False,
) -> bytes:
    """Serialize headers in order. `None` values are skipped as SOFARPC does, or written
    as length -1 (as sofa-bolt-node does) with `keep_nulls=True`."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    parts: list[bytes] = []
    pack = _I32.pack
    try:
        for key, value in items:
            if value is None and not keep_nulls:
                continue
            kb = key.encode()
            parts += (pack(len(kb)), kb)
            if value is None:
                parts.append(_NULL)
            else:
                vb = value.encode()
                parts += (pack(len(vb)), vb)
    except (UnicodeEncodeError, AttributeError) as exc:
        raise LocalProtocolError(f"bolt header map: cannot encode header: {exc}") from None
    return b"".join(parts)
