"""Strings as Java's Hessian writes them: UTF-8 of UTF-16 units.

Hessian 2.0 counts string lengths in UTF-16 code units ("the length is the
number of 16-bit characters", spec section 3.11), and com.caucho's
Hessian2Output encodes each unit on its own, so a character outside the Basic
Multilingual Plane becomes a surrogate pair written as two 3-byte sequences
(CESU-8). Hessian2Input rejects 4-byte UTF-8 outright. This module converts
between Python `str` and those bytes, and finds where n units end in a buffer
without a per-byte Python loop.

Python's `surrogatepass` error handler does the per-unit work: it encodes and
decodes lone surrogates as 3-byte sequences, exactly as Java does.
"""

from __future__ import annotations

import re

# Bytes that continue a UTF-8 sequence (10xxxxxx); every other byte starts a character.
_CONTINUATION = bytes(range(0x80, 0xC0))
# Lead bytes of 4-byte sequences: one character, two UTF-16 units.
_NOT_FOUR_BYTE_LEAD = bytes(b for b in range(256) if not 0xF0 <= b <= 0xF7)
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_CHUNK_UNITS = 0x8000  # Hessian2Output.writeString: chunks of at most 0x8000 units


def _pair(match: re.Match[str]) -> str:
    c = ord(match.group()) - 0x10000
    return chr(0xD800 + (c >> 10)) + chr(0xDC00 + (c & 0x3FF))


def has_four_byte(utf8: bytes) -> bool:
    """True if valid UTF-8 `utf8` holds a character outside the BMP (each check is a memchr)."""
    return 0xF0 in utf8 or 0xF1 in utf8 or 0xF2 in utf8 or 0xF3 in utf8 or 0xF4 in utf8


def to_units(s: str) -> str:
    """`s` with every non-BMP character split into its surrogate pair: one item per UTF-16 unit."""
    return _ASTRAL.sub(_pair, s)


def java_chunks(s: str) -> list[tuple[int, bytes]]:
    """Split `s` as Hessian2Output.writeString does: (units, bytes) per chunk.

    Chunks hold 0x8000 units, except that a chunk never ends in a high
    surrogate (Java moves it to the next chunk); the last chunk holds the rest.
    """
    # UTF-16 encoding is a near-memcpy: it tells cheaply whether any character
    # needs a surrogate pair, and only then is the (slower) regex split run.
    if len(s.encode("utf-16-le", "surrogatepass")) != 2 * len(s):
        s = to_units(s)
    units = s
    out: list[tuple[int, bytes]] = []
    start, left = 0, len(units)
    while left > _CHUNK_UNITS:
        size = _CHUNK_UNITS
        if 0xD800 <= ord(units[start + size - 1]) <= 0xDBFF:
            size -= 1
        out.append((size, units[start : start + size].encode("utf-8", "surrogatepass")))
        start += size
        left -= size
    out.append((left, units[start:].encode("utf-8", "surrogatepass")))
    return out


def count_units(segment: bytes) -> int:
    """UTF-16 units started in `segment`: one per non-continuation byte, two per 4-byte lead."""
    leads = segment.translate(None, _CONTINUATION)
    n = len(leads)
    if not leads.isascii() and has_four_byte(leads):
        n += len(leads.translate(None, _NOT_FOUR_BYTE_LEAD))
    return n


def units_end(data: bytes, pos: int, units: int, end: int) -> int:
    """Offset just past `units` UTF-16 units of UTF-8 starting at `pos` in `data[:end]`.

    Returns -1 if the input ends first, -2 if the units end inside a 4-byte
    character (a surrogate pair split across chunks). Counting is done by C
    code on slices (`count_units`); no Python loop runs per byte.
    """
    stop = pos + units
    if stop > end:
        return -1
    segment = data[pos:stop]
    if segment.isascii():
        return stop
    have = count_units(segment)
    while have < units:
        missing = units - have
        # Guess the rest from the bytes per unit so far (exact for uniform text).
        guess = min((stop - pos) * missing // max(have, 1), end - stop)
        if guess > missing:
            found = count_units(data[stop : stop + guess])
            if found < missing:  # the guess ends inside the string: keep it
                have += found
                stop += guess
                continue
            if found == missing:  # the string ends in the guess, after its last lead byte
                last = _last_char_end(data, stop, stop + guess, end)
                if last != -3:
                    return last
        # The safe step: every missing unit takes at least one byte.
        nxt = stop + missing
        if nxt > end:
            return -1
        have += count_units(data[stop:nxt])
        stop = nxt
    if have > units:
        return -2
    last = _last_char_end(data, pos, stop, end)
    return stop if last == -3 else last


def _last_char_end(data: bytes, lo: int, hi: int, end: int) -> int:
    """End of the character whose lead byte is the last one in data[lo:hi].

    Looks back at most four bytes; -3 if no lead byte is there, -1 if the
    character runs past `end`.
    """
    lead_at = hi - 1
    while lead_at > lo and hi - lead_at < 4 and 0x80 <= data[lead_at] < 0xC0:
        lead_at -= 1
    lead = data[lead_at]
    if 0x80 <= lead < 0xC0:
        return -3
    size = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return lead_at + size if lead_at + size <= end else -1


def decode_java(raw: bytes) -> str:
    """Decode Java's UTF-8 (raises UnicodeDecodeError); surrogate pairs become one character."""
    s = raw.decode("utf-8", "surrogatepass")
    if 0xED in raw:  # 0xED leads every 3-byte surrogate
        s = s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return s
