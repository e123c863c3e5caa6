"""Readers for Hessian 2.0 scalars, strings and binaries: the leaves of a value.

`ScalarReader` is the half of `Decoder` that reads values holding no other
values. Each method is called with the tag byte already consumed and reads the
rest at `self._pos` (spec sections 3.1-3.12). A slice never holds more than the
input, and its length is checked before a value is built from it; reading a
fixed-size field past the end raises IndexError or struct.error, which
`Decoder.read` reports as truncation.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

from sofamesh.codecs.hessian2.errors import Hessian2DecodeError
from sofamesh.codecs.hessian2.limits import Hessian2Limits
from sofamesh.codecs.hessian2.text import decode_java, units_end
from sofamesh.codecs.hessian2.types import Long

I16 = struct.Struct(">h").unpack_from
U16 = struct.Struct(">H").unpack_from
I32 = struct.Struct(">i").unpack_from
I64 = struct.Struct(">q").unpack_from
F64 = struct.Struct(">d").unpack_from
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LONGS = [Long(v) for v in range(-8, 16)]
_new_long = int.__new__  # skips Long's range check: every wire long is in range
_SIGNED_BYTE_DOUBLES = [float(b - 256 if b > 127 else b) for b in range(256)]


class ScalarReader:
    """Tag handlers for the leaf values; `Decoder` adds containers and objects."""

    __slots__ = ("_data", "_end", "_limits", "_pos")
    _data: bytes
    _pos: int
    _end: int
    _limits: Hessian2Limits

    def _error(self, message: str) -> Hessian2DecodeError:
        return Hessian2DecodeError(message, self._pos)

    def _null(self, tag: int) -> Any:
        return None

    def _true(self, tag: int) -> Any:
        return True

    def _false(self, tag: int) -> Any:
        return False

    def _int_1(self, tag: int) -> Any:
        return tag - 0x90

    def _int_2(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 1
        return ((tag - 0xC8) << 8) + self._data[pos]

    def _int_3(self, tag: int) -> Any:
        pos = self._pos
        data = self._data
        self._pos = pos + 2
        return ((tag - 0xD4) << 16) + (data[pos] << 8) + data[pos + 1]

    def _int_4(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 4
        return I32(self._data, pos)[0]

    def _long_1(self, tag: int) -> Any:
        return _LONGS[tag - 0xD8]

    def _long_2(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 1
        return _new_long(Long, ((tag - 0xF8) << 8) + self._data[pos])

    def _long_3(self, tag: int) -> Any:
        pos = self._pos
        data = self._data
        self._pos = pos + 2
        return _new_long(Long, ((tag - 0x3C) << 16) + (data[pos] << 8) + data[pos + 1])

    def _long_4(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 4
        return _new_long(Long, I32(self._data, pos)[0])

    def _long_8(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 8
        return _new_long(Long, I64(self._data, pos)[0])

    def _double_0(self, tag: int) -> Any:
        return 0.0

    def _double_1(self, tag: int) -> Any:
        return 1.0

    def _double_byte(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 1
        return _SIGNED_BYTE_DOUBLES[self._data[pos]]

    def _double_short(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 2
        return float(I16(self._data, pos)[0])

    def _double_mill(self, tag: int) -> Any:
        # The spec calls x5f a float; Hessian2Output writes an int count of
        # thousandths and Hessian2Input returns 0.001 * mills. Match Java.
        pos = self._pos
        self._pos = pos + 4
        return 0.001 * I32(self._data, pos)[0]

    def _double_8(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 8
        return F64(self._data, pos)[0]

    def _date_ms(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 8
        return self._date(I64(self._data, pos)[0])

    def _date_minutes(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 4
        return self._date(I32(self._data, pos)[0] * 60000)

    def _date(self, ms: int) -> datetime:
        try:
            return _EPOCH + timedelta(0, 0, 0, ms)  # positional: faster than milliseconds=
        except OverflowError:
            raise self._error(f"date {ms} ms is outside Python's datetime range") from None

    # ---------------------------------------------------------------- strings
    def _string_1(self, tag: int) -> Any:
        # The commonest value in RPC bodies (names, keys, short text): inline the
        # fast path of `_string` for one chunk of ASCII.
        pos = self._pos
        raw = self._data[pos : pos + tag]
        if len(raw) == tag and raw.isascii():
            self._pos = pos + tag
            return raw.decode("ascii")
        return self._string_chunks(tag, True)

    def _string_2(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 1
        return self._string(((tag - 0x30) << 8) + self._data[pos], True)

    def _string_final(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 2
        units = U16(self._data, pos)[0]
        if units > self._limits.max_string:
            return self._string_chunks(units, True)  # raises the limit error
        return self._string(units, True)

    def _string_chunk(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 2
        return self._string(U16(self._data, pos)[0], False)

    def _string(self, units: int, last: bool) -> str:
        pos = self._pos
        if last:  # fast path: one chunk of ASCII, one byte per unit
            raw = self._data[pos : pos + units]
            if len(raw) == units and raw.isascii():
                self._pos = pos + units
                return raw.decode("ascii")
        return self._string_chunks(units, last)

    def _string_chunks(self, units: int, last: bool) -> str:
        data, end, limit = self._data, self._end, self._limits.max_string
        parts: list[bytes] = []
        total = 0
        while True:
            total += units
            if total > limit:
                raise self._error(f"string longer than max_string={limit}")
            pos = self._pos
            stop = units_end(data, pos, units, end)
            if stop < 0:
                if stop == -1:
                    raise Hessian2DecodeError("input ends inside a string", end)
                raise self._error("string chunk ends inside a surrogate pair")
            parts.append(data[pos:stop])
            self._pos = stop
            if last:
                break
            units, last = self._string_chunk_header()
        try:
            return decode_java(parts[0] if len(parts) == 1 else b"".join(parts))
        except UnicodeDecodeError as exc:
            raise self._error(f"invalid UTF-8 in string: {exc.reason}") from None

    def _string_chunk_header(self) -> tuple[int, bool]:
        data, pos = self._data, self._pos
        tag = data[pos]
        self._pos = pos + 1
        if tag < 0x20:
            return tag, True
        if 0x30 <= tag <= 0x33:
            self._pos = pos + 2
            return ((tag - 0x30) << 8) + data[pos + 1], True
        if tag == 0x52 or tag == 0x53:
            self._pos = pos + 3
            return U16(data, pos + 1)[0], tag == 0x53
        self._pos = pos
        raise self._error(f"expected a string chunk, found tag 0x{tag:02x}")

    # ---------------------------------------------------------------- binary
    def _binary_1(self, tag: int) -> Any:
        return self._binary(tag - 0x20, True)

    def _binary_2(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 1
        return self._binary(((tag - 0x34) << 8) + self._data[pos], True)

    def _binary_final(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 2
        return self._binary(U16(self._data, pos)[0], True)

    def _binary_chunk(self, tag: int) -> Any:
        pos = self._pos
        self._pos = pos + 2
        return self._binary(U16(self._data, pos)[0], False)

    def _binary(self, size: int, last: bool) -> bytes:
        pos, stop = self._pos, self._pos + size
        if last and stop <= self._end and size <= self._limits.max_binary:  # one chunk, one copy
            self._pos = stop
            return self._data[pos:stop]
        view, limit = memoryview(self._data), self._limits.max_binary
        parts: list[memoryview] = []
        total = 0
        while True:
            total += size
            if total > limit:
                raise self._error(f"binary longer than max_binary={limit}")
            pos = self._pos
            stop = pos + size
            if stop > self._end:
                raise Hessian2DecodeError("input ends inside a binary", self._end)
            parts.append(view[pos:stop])
            self._pos = stop
            if last:
                return b"".join(parts)
            size, last = self._binary_chunk_header()

    def _binary_chunk_header(self) -> tuple[int, bool]:
        data, pos = self._data, self._pos
        tag = data[pos]
        self._pos = pos + 1
        if 0x20 <= tag <= 0x2F:
            return tag - 0x20, True
        if 0x34 <= tag <= 0x37:
            self._pos = pos + 2
            return ((tag - 0x34) << 8) + data[pos + 1], True
        if tag == 0x41 or tag == 0x42:
            self._pos = pos + 3
            return U16(data, pos + 1)[0], tag == 0x42
        self._pos = pos
        raise self._error(f"expected a binary chunk, found tag 0x{tag:02x}")
