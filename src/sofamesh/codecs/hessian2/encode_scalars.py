"""Writers for Hessian 2.0 scalars, strings and binaries (the leaves of a value).

Each writer appends to `enc.buf` the form Hessian2Output 4.0.38 chooses for
the value (spec sections 3.1-3.12): the shortest compact form, except where
Java's writer does otherwise (the int-thousandths double form, chunk sizes).
Big strings and binaries are handed to `Encoder.spill` so that their bytes
are copied once, when the stream is joined.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sofamesh.codecs.hessian2.errors import Hessian2EncodeError
from sofamesh.codecs.hessian2.text import has_four_byte, java_chunks

if TYPE_CHECKING:
    from sofamesh.codecs.hessian2.encoder import Encoder, Piece

TAG_B = struct.Struct(">BB").pack
TAG_BB = struct.Struct(">BBB").pack
TAG_H = struct.Struct(">BH").pack
TAG_h = struct.Struct(">Bh").pack
TAG_I = struct.Struct(">Bi").pack
TAG_Q = struct.Struct(">Bq").pack
TAG_D = struct.Struct(">Bd").pack
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BINARY_CHUNK = 8189  # Hessian2Output: 8192-byte buffer minus the 3-byte chunk header
_CHUNK_HEADER = TAG_H(0x41, _BINARY_CHUNK)
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1


def write_none(enc: Encoder, value: Any) -> None:
    enc.buf.append(0x4E)


def write_bool(enc: Encoder, value: Any) -> None:
    enc.buf.append(0x54 if value else 0x46)


def write_int(enc: Encoder, value: Any) -> None:
    buf = enc.buf
    if -0x10 <= value <= 0x2F:
        buf.append(0x90 + value)
    elif -0x800 <= value <= 0x7FF:
        buf += TAG_B(0xC8 + (value >> 8), value & 0xFF)
    elif -0x40000 <= value <= 0x3FFFF:
        buf += TAG_BB(0xD4 + (value >> 16), (value >> 8) & 0xFF, value & 0xFF)
    elif INT_MIN <= value <= INT_MAX:
        buf += TAG_I(0x49, value)
    else:
        write_long(enc, value)


def write_long(enc: Encoder, value: Any) -> None:
    buf = enc.buf
    if -0x08 <= value <= 0x0F:
        buf.append(0xE0 + value)
    elif -0x800 <= value <= 0x7FF:
        buf += TAG_B(0xF8 + (value >> 8), value & 0xFF)
    elif -0x40000 <= value <= 0x3FFFF:
        buf += TAG_BB(0x3C + (value >> 16), (value >> 8) & 0xFF, value & 0xFF)
    elif INT_MIN <= value <= INT_MAX:
        buf += TAG_I(0x59, value)
    elif LONG_MIN <= value <= LONG_MAX:
        buf += TAG_Q(0x4C, value)
    else:
        raise Hessian2EncodeError(f"int {value} does not fit in a Java long")


def java_int(x: float) -> int:
    """Java's (int) cast of a double: NaN is 0, out-of-range values saturate."""
    if x != x:
        return 0
    if x >= INT_MAX:
        return INT_MAX
    if x <= INT_MIN:
        return INT_MIN
    return int(x)


def write_double(enc: Encoder, value: Any) -> None:
    """Hessian2Output.writeDouble: the compact forms apply when Java's `(int) value`
    equals the value; else, if `0.001 * (int) (value * 1000)` equals it, an int of
    thousandths (x5f); else the 8-byte form. Java's (int) saturates, so outside the
    int range only the 8-byte form (or thousandths, checked with `java_int`) can match.
    """
    buf = enc.buf
    if -2147483648.0 < value < 2147483647.0:  # also excludes NaN and infinities
        whole = int(value)
        if whole == value:
            if -0x80 <= whole < 0x80:
                if whole == 0:
                    if math.copysign(1.0, value) > 0:
                        buf.append(0x5B)
                    else:
                        buf += TAG_D(0x44, value)  # keep -0.0 (Java's writer sends 0.0)
                elif whole == 1:
                    buf.append(0x5C)
                else:
                    buf += TAG_B(0x5D, whole & 0xFF)
                return
            if -0x8000 <= whole < 0x8000:
                buf += TAG_h(0x5E, whole)
                return
    mills = java_int(value * 1000)
    if 0.001 * mills == value:  # the same double arithmetic Java does
        buf += TAG_I(0x5F, mills)
    else:
        buf += TAG_D(0x44, value)


def write_date(enc: Encoder, value: Any) -> None:
    try:
        delta = value - _EPOCH
    except TypeError:  # naive: no tzinfo, or one that gives no offset
        raise Hessian2EncodeError(
            "naive datetime: give it a tzinfo (a Java Date is an instant)"
        ) from None
    ms = (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if ms % 60000 == 0 and INT_MIN <= ms // 60000 <= INT_MAX:
        enc.buf += TAG_I(0x4B, ms // 60000)
    else:
        enc.buf += TAG_Q(0x4A, ms)


def write_str(enc: Encoder, value: Any) -> None:
    try:
        raw = value.encode()
    except UnicodeEncodeError:  # lone surrogates: Java writes them as 3-byte sequences too
        raw = value.encode("utf-8", "surrogatepass")
    units = len(value)
    if (len(raw) != units and has_four_byte(raw)) or units > 0x8000:
        write_str_chunks(enc, value)
        return
    buf = enc.buf
    if units <= 0x1F:
        buf.append(units)
    elif units <= 0x3FF:
        buf += TAG_B(0x30 + (units >> 8), units & 0xFF)
    else:
        buf += TAG_H(0x53, units)
    buf += raw


def write_str_chunks(enc: Encoder, value: str) -> None:
    """Long strings and strings outside the BMP: UTF-16 units, chunked as Java does."""
    chunks = java_chunks(value)
    pieces: list[Piece] = []
    for units, raw in chunks[:-1]:
        pieces += (TAG_H(0x52, units), raw)
    units, raw = chunks[-1]
    if units <= 0x1F:
        pieces.append(bytes((units,)))
    elif units <= 0x3FF:
        pieces.append(TAG_B(0x30 + (units >> 8), units & 0xFF))
    else:
        pieces.append(TAG_H(0x53, units))
    pieces.append(raw)
    enc.spill(pieces)


def write_bytes(enc: Encoder, value: Any) -> None:
    size = len(value)
    if size > _BINARY_CHUNK:
        write_bytes_chunks(enc, memoryview(value), size)
        return
    buf = enc.buf
    if size <= 0x0F:
        buf.append(0x20 + size)
    elif size <= 0x3FF:
        buf += TAG_B(0x34 + (size >> 8), size & 0xFF)
    else:
        buf += TAG_H(0x42, size)
    buf += value


def write_bytes_chunks(enc: Encoder, view: memoryview, size: int) -> None:
    pieces: list[Piece] = []
    start = 0
    while size - start > _BINARY_CHUNK:
        pieces += (_CHUNK_HEADER, view[start : start + _BINARY_CHUNK])
        start += _BINARY_CHUNK
    left = size - start
    if left <= 0x0F:
        pieces.append(bytes((0x20 + left,)))
    elif left <= 0x3FF:
        pieces.append(TAG_B(0x34 + (left >> 8), left & 0xFF))
    else:
        pieces.append(TAG_H(0x42, left))
    pieces.append(view[start:])
    enc.spill(pieces)


def write_memoryview(enc: Encoder, value: Any) -> None:
    write_bytes(enc, value.cast("B") if value.c_contiguous else value.tobytes())
