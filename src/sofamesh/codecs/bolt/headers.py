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
    the wanted ones by their length and first byte, without a copy or a lookup. An
    answer may be shared with earlier calls' (`_Layout.read`): read it, never modify it."""

    __slots__ = ("_firsts", "_layouts", "_lengths", "_prefix", "_size", "_wanted")

    def __init__(self, wanted: Mapping[bytes, int], prefix: bytes) -> None:
        self._wanted = dict(wanted)
        self._lengths = frozenset(map(len, wanted))
        self._size = max(wanted.values(), default=-1) + 1
        self._prefix = prefix
        self._firsts = prefix[:1] + prefix[:1].upper()  # what a key's first byte may be
        self._layouts: dict[int, _Layout | tuple[int, ...]] = {}  # by map size: `_learn`

    def pick(
        self, data: bytes, max_entries: int = DEFAULT_MAX_HEADER_ENTRIES
    ) -> tuple[list[str | None], bool] | None:
        seen = self._layouts.get(len(data))
        if type(seen) is _Layout and seen.count <= max_entries:
            # `_Layout.read`'s first case in place (a Python call fewer per request):
            # the map of the last one read again but for values no slot takes.
            fields = seen.fields.unpack(data)
            last, answer = seen.last
            if fields == last and answer is not None and len(answer[0]) == self._size:
                return answer
            got = seen.read(data, self._size, fields)
            if got is not None:
                return got
        got, shape = self._walk(data, max_entries)
        if got is not None and shape is not None:
            self._learn(data, shape, seen, got[1])
        return got

    def _walk(
        self, data: bytes, max_entries: int
    ) -> tuple[tuple[list[str | None], bool] | None, tuple[int, ...] | None]:
        """The map read entry by entry: the answer, and its entries' lengths (None when
        a value is null: such maps are not remembered)."""
        values: list[str | None] = [None] * self._size
        wanted, lengths, prefix, firsts = self._wanted, self._lengths, self._prefix, self._firsts
        plen = len(prefix)
        flagged = False
        off, end, count = 0, len(data), 0
        unpack = _I32.unpack_from
        shape: list[int] | None = []
        try:
            while off < end:
                count += 1
                (klen,) = unpack(data, off)
                key = off + 4
                off = key + klen if klen > 0 else key
                (vlen,) = unpack(data, off)
                off += 4
                if vlen < 0 or klen < 0:  # a null: nothing to pick or flag
                    shape = None
                    off += max(vlen, 0)
                    continue
                if shape is not None:
                    shape += (klen, vlen)
                if klen in lengths:
                    name = data[key : off - 4]
                    # Peers write the wanted names in lowercase: `lower()` only on a miss.
                    slot = wanted.get(name)
                    if slot is None:
                        slot = wanted.get(name.lower())
                    if slot is not None and values[slot] is None:
                        values[slot] = data[off : off + vlen].decode("utf-8", "replace")
                if (
                    klen >= plen
                    and (not plen or data[key] in firsts)
                    and data[key : key + plen].lower() == prefix
                ):
                    flagged = True
                off += vlen
        except struct.error:
            return None, None
        if off != end or count > max_entries:
            return None, None
        return (values, flagged), None if shape is None else tuple(shape)

    def _learn(
        self,
        data: bytes,
        shape: tuple[int, ...],
        seen: _Layout | tuple[int, ...] | None,
        flagged: bool,
    ) -> None:
        """Remember the shape of a map of this size; compile it once it comes twice in a
        row (a peer sends the same keys with values of the same lengths call after call),
        so a stream of ever new shapes costs a tuple, not a `struct.Struct`, each."""
        layouts, size = self._layouts, len(data)
        if seen is None and len(layouts) >= _MAX_LAYOUTS:
            layouts.clear()
        if seen != shape:  # a first sighting (or a compiled layout whose keys differed)
            layouts[size] = shape
            return
        layouts[size] = _Layout(shape, data, flagged, self._wanted)


_MAX_LAYOUTS = 256  # map sizes a picker remembers a shape for


class _Layout:
    """A header map's shape seen before (its entries' lengths and keys), checked and read
    with `struct` calls: `skeletons` gives each entry's lengths and key as one string (its
    "skeleton", the value skipped), compared with the shape's in one tuple compare, the
    same validation as a walk; `values` gives only the wanted values. A map whose
    skeletons and wanted values are those of the last map read (`fields`: one call; a
    client names the same service, method and app call after call, its trace ids being
    the values that change) gets the last answer back. Only maps without nulls have one."""

    __slots__ = ("count", "fields", "flagged", "keys", "last", "skeleton", "skeletons",
                 "slots", "values")  # fmt: skip

    def __init__(
        self, lengths: tuple[int, ...], data: bytes, flagged: bool, wanted: Mapping[bytes, int]
    ) -> None:
        pairs = list(zip(lengths[::2], lengths[1::2], strict=True))
        # `<`: no alignment; `{v}x` skips a value without making an object of it.
        self.skeletons = struct.Struct("<" + "".join(f"{8 + k}s{v}x" for k, v in pairs))
        self.skeleton: tuple[bytes, ...] = self.skeletons.unpack(data)
        self.keys = tuple(entry[4:-4] for entry in self.skeleton)
        self.count = len(pairs)
        self.flagged = flagged
        slots: dict[int, int] = {}  # slot -> the entry giving it (the first with its key)
        for i, key in enumerate(self.keys):
            slot = wanted.get(key.lower())
            if slot is not None and slot not in slots:
                slots[slot] = i
        taken = sorted(slots, key=slots.__getitem__)  # in the order `values` gives them
        self.slots = tuple(taken)
        chosen = {slots[slot] for slot in taken}
        fmt, fields, end = "<", "<", 0
        for i, (k, v) in enumerate(pairs):
            start = end + 8 + k
            fmt += f"{8 + k}x{v}s" if i in chosen else f"{8 + k + v}x"
            fields += f"{8 + k}s{v}s" if i in chosen else f"{8 + k}s{v}x"
            end = start + v
        self.values = struct.Struct(fmt)
        self.fields = struct.Struct(fields)
        self.last: tuple[tuple[bytes, ...], tuple[list[str | None], bool] | None] = ((), None)

    def read(
        self, data: bytes, size: int, fields: tuple[bytes, ...] | None = None
    ) -> tuple[list[str | None], bool] | None:
        """`HeaderPicker.pick`'s answer for `data` (of this layout's size), or None when it
        is not of this shape; `fields` is `self.fields.unpack(data)` when the caller has
        it. The answer may be the last one given: read, never modify it."""
        if fields is None:
            fields = self.fields.unpack(data)
        last, answer = self.last
        if fields == last and answer is not None and len(answer[0]) == size:
            return answer
        if self.skeletons.unpack(data) != self.skeleton:
            return None
        values: list[str | None] = [None] * size
        for slot, raw in zip(self.slots, self.values.unpack(data)):  # noqa: B905
            try:  # strict first: `decode()` without arguments skips the codec-name lookups
                values[slot] = raw.decode()
            except UnicodeDecodeError:
                values[slot] = raw.decode("utf-8", "replace")
        answer = values, self.flagged
        self.last = (fields, answer)  # one assignment: a thread never reads a half
        return answer


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
