"""The names a Dubbo request body gives, read off its head without decoding arguments.

A request body starts with five strings (wire.py): Dubbo version, service path, service
version, method name and parameter descriptor. A proxy routes on them, so this runs per
request; it reads the compact string forms Hessian 2 writers use for short ASCII
strings, and gives None for anything else (the caller then uses the full decoder in
`body`, so the answer is never a guess). A client sends the same head for every call
of a method, so heads read are remembered by their exact bytes (`_HEADS`, bounded): a
request whose leading bytes are a remembered head has that head, and costs one slice
and one lookup. The attachments come after the arguments; `attachments_of` reads them,
stepping over scalar arguments without decoding them (a string's bytes are only
checked to be ASCII) and over others with the Hessian decoder.
Hessian 2.0 grammar: http://hessian.caucho.com/doc/hessian-serialization.html
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sofamesh.codecs import hessian2
from sofamesh.codecs.dubbo import descriptors


class Head(NamedTuple):
    dubbo_version: str
    path: str
    version: str
    method: str
    descriptor: str
    end: int  # offset of the first argument in the body


class _Unknown(Exception):
    """A form this reader does not handle."""


_HEADS: dict[bytes, Head] = {}
_MAX_HEADS = 1024  # heads remembered; past that the memory starts again
_MAX_HEAD_BYTES = 512  # longer heads are read every time


def peek_head(body: bytes) -> Head | None:
    """The five leading strings of a Hessian 2 request body, or None."""
    end = _head_length(body)
    if end <= _MAX_HEAD_BYTES and (head := _HEADS.get(body[:end])) is not None:
        return head  # those bytes were read before: the same five strings
    head = _read_head(body)
    if head is not None and head.end <= _MAX_HEAD_BYTES:
        if len(_HEADS) >= _MAX_HEADS:
            _HEADS.clear()
        _HEADS[body[: head.end]] = head
    return head


def _head_length(body: bytes) -> int:
    """Where the head ends if its strings are compact and ASCII (else any offset: only
    a remembered head's exact bytes can match, and they parse the same wherever)."""
    pos = 0
    try:
        for _ in range(5):
            tag = body[pos]
            if tag <= 0x1F:
                pos += 1 + tag
            elif 0x30 <= tag <= 0x33:
                pos += 2 + ((tag - 0x30) << 8) + body[pos + 1]
            else:
                pos += 1 if tag == 0x4E else _MAX_HEAD_BYTES + 1
    except IndexError:
        return _MAX_HEAD_BYTES + 1
    return pos


def _read_head(body: bytes) -> Head | None:
    try:
        pos, out = 0, []
        for _ in range(5):
            text, pos = _string(body, pos)
            out.append(text)
    except (_Unknown, IndexError):
        return None
    return Head(out[0], out[1], out[2], out[3], out[4], pos)


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    tag = buf[pos]
    if tag <= 0x1F:
        size, pos = tag, pos + 1
    elif 0x30 <= tag <= 0x33:
        size, pos = ((tag - 0x30) << 8) + buf[pos + 1], pos + 2
    elif tag == 0x53:  # 'S': a final chunk with a 16-bit length
        size, pos = (buf[pos + 1] << 8) + buf[pos + 2], pos + 3
    elif tag == 0x4E:  # 'N': a null version or descriptor reads as ""
        return "", pos + 1
    else:
        raise _Unknown  # chunked ('R') or not a string
    raw = buf[pos : pos + size]
    if len(raw) != size or not raw.isascii():  # lengths count UTF-16 units, bytes if ASCII
        raise _Unknown
    return raw.decode("ascii"), pos + size


def attachments_of(
    body: bytes, head: Head, limits: hessian2.Hessian2Limits = hessian2.DEFAULT_LIMITS
) -> tuple[dict[str, Any], int]:
    """The attachments after the arguments ({} when there are none) and the offset where
    their map starts (the body's length when there is none). Raises
    `hessian2.Hessian2DecodeError` or ValueError (a bad descriptor).

    Arguments of the plain scalar forms (null, booleans, numbers, ASCII strings) are
    stepped over without being decoded, and a map of ASCII strings is read directly;
    anything else goes to the Hessian decoder, so the answer is the same either way."""
    try:
        return _fast_attachments(body, head)
    except (_Unknown, IndexError):
        pass
    decoder = hessian2.Decoder(memoryview(body)[head.end :], limits=limits)
    for _ in range(descriptors.count(head.descriptor)):
        decoder.read()
    start = head.end + decoder.offset
    if decoder.at_end:
        return {}, start
    found = decoder.read()
    if not isinstance(found, dict) or head.end + decoder.offset != len(body):
        raise hessian2.Hessian2DecodeError("the attachments are not one map", decoder.offset)
    return {str(k): v for k, v in found.items()}, start


def attachments_at(body: bytes, head: Head) -> int | None:
    """Where the attachments map starts (the body's length when there is none), if the
    arguments are all of the scalar forms stepped over without decoding; else None."""
    try:
        return _skip_arguments(body, head)
    except (_Unknown, IndexError, ValueError):
        return None


def _skip_arguments(body: bytes, head: Head) -> int:
    pos = head.end
    for _ in range(descriptors.count(head.descriptor)):
        pos = _skip(body, pos)
    return pos


def _fast_attachments(body: bytes, head: Head) -> tuple[dict[str, Any], int]:
    pos = _skip_arguments(body, head)
    start, end = pos, len(body)
    if pos == end:
        return {}, start
    if body[pos] != 0x48 or body[-1] != 0x5A:  # 'H' ... 'Z'
        raise _Unknown
    pos += 1
    found: dict[str, Any] = {}
    while pos < end - 1:
        key, pos = _string(body, pos)
        found[key], pos = _string(body, pos)
    if pos != end - 1:
        raise _Unknown
    return found, start


# Hessian 2 scalar forms by first byte: how many bytes the value takes (strings aside).
_FIXED = bytearray(256)
for _first, _last, _size in (
    (0x4E, 0x4E, 1), (0x54, 0x54, 1), (0x46, 0x46, 1),  # null, true, false
    (0x80, 0xBF, 1), (0xC0, 0xCF, 2), (0xD0, 0xD7, 3), (0x49, 0x49, 5),  # int
    (0xD8, 0xEF, 1), (0xF0, 0xFF, 2), (0x38, 0x3F, 3), (0x59, 0x59, 5), (0x4C, 0x4C, 9),  # long
    (0x5B, 0x5C, 1), (0x5D, 0x5D, 2), (0x5E, 0x5E, 3), (0x5F, 0x5F, 5), (0x44, 0x44, 9),  # double
):  # fmt: skip
    _FIXED[_first : _last + 1] = bytes([_size]) * (_last - _first + 1)


def _skip(buf: bytes, pos: int) -> int:
    """The offset after the scalar value at `pos` (_Unknown for other forms)."""
    tag = buf[pos]
    size = _FIXED[tag]
    if size:
        if pos + size > len(buf):
            raise _Unknown
        return pos + size
    while tag == 0x52:  # 'R': a non-final chunk of a string
        size = (buf[pos + 1] << 8) + buf[pos + 2]
        if not buf[pos + 3 : pos + 3 + size].isascii() or pos + 3 + size > len(buf):
            raise _Unknown
        pos += 3 + size
        tag = buf[pos]
    if tag == 0x4E:
        raise _Unknown  # a null cannot end a chunked string
    return _skip_string(buf, pos)


def _skip_string(buf: bytes, pos: int) -> int:
    """The offset after the final string chunk at `pos`, without decoding it."""
    tag = buf[pos]
    if tag <= 0x1F:
        size, pos = tag, pos + 1
    elif 0x30 <= tag <= 0x33:
        size, pos = ((tag - 0x30) << 8) + buf[pos + 1], pos + 2
    elif tag == 0x53:
        size, pos = (buf[pos + 1] << 8) + buf[pos + 2], pos + 3
    else:
        raise _Unknown
    end = pos + size
    if end > len(buf) or not buf[pos:end].isascii():
        raise _Unknown  # lengths count UTF-16 units: bytes only if ASCII
    return end
