"""The names a Dubbo request body gives, read off its head without decoding arguments.

A request body starts with five strings (wire.py): Dubbo version, service path, service
version, method name and parameter descriptor. A proxy routes on them, so this runs per
request; it reads the compact string forms Hessian 2 writers use for short ASCII
strings, and gives None for anything else (the caller then uses the full decoder in
`body`, so the answer is never a guess). The attachments come after the arguments;
`attachments_of` reads them, stepping over the arguments with the Hessian decoder.
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


def peek_head(body: bytes) -> Head | None:
    """The five leading strings of a Hessian 2 request body, or None."""
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
    `hessian2.Hessian2DecodeError` or ValueError (a bad descriptor)."""
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
