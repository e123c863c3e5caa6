"""Frames to bytes, and cheap edits of encoded frames for proxying.

`encode(frame)` checks every field against what the wire can carry (and what our own
decoder accepts) and raises `LocalProtocolError` otherwise. The class name, header map
and body are joined as they are, so each byte of the body is copied once.

A proxy re-maps request ids per upstream connection. Either re-encode a decoded frame
with `encode(frame, request_id=new_id)`, or patch an already-encoded frame with
`with_request_id(data, new_id)` / `with_timeout(data, ms)`: one copy of the frame, and
the CRC32 trailer (if any) checked first and recomputed after, so a corrupt frame is
never laundered into a valid one.
"""

from __future__ import annotations

import struct
import zlib

from sofamesh.codecs.bolt.codes import BOLT_V1, BOLT_V2, CommandCode
from sofamesh.codecs.bolt.errors import CrcMismatchError, LocalProtocolError
from sofamesh.codecs.bolt.frames import Frame, RequestFrame, ResponseFrame
from sofamesh.codecs.bolt.wire import (
    I32,
    MAX_SHORT_LENGTH,
    REQUEST_ID_OFFSET,
    TIMEOUT_OFFSET,
    U32,
    V1_REQUEST,
    V1_RESPONSE,
    V2_REQUEST,
    V2_RESPONSE,
    FixedHeader,
    read_fixed_header,
)

_REQUEST_CODES = (CommandCode.HEARTBEAT, CommandCode.RPC_REQUEST)
_RESPONSE_CODES = (CommandCode.HEARTBEAT, CommandCode.RPC_RESPONSE)


def encode(frame: Frame, *, request_id: int | None = None) -> bytes:
    """Encode `frame`, optionally under another request id (for proxies)."""
    # Fields unpacked once: a proxy encodes two frames per call, and attribute reads of
    # a NamedTuple cost more than one unpacking.
    if type(frame) is RequestFrame:
        rid, body, cls, hdr, extra, oneway, cmd, codec, version, ver1, switch, ver2 = frame
        typ, codes = (2 if oneway else 1), _REQUEST_CODES
    elif type(frame) is ResponseFrame:
        rid, extra, body, cls, hdr, cmd, codec, version, ver1, switch, ver2 = frame
        typ, codes = 0, _RESPONSE_CODES
    else:
        raise TypeError(f"not a Bolt frame: {type(frame).__name__}")
    cl, hl = len(cls), len(hdr)
    if not (version == BOLT_V1 and ver1 == 1 and not switch and cmd in codes) or (
        cl > MAX_SHORT_LENGTH or hl > MAX_SHORT_LENGTH
    ):  # the usual v1 frame is checked inline, a Python call less per frame
        _check(rid, cl, hl, cmd in codes, cmd, version, ver1, switch)
    if request_id is not None:
        rid = request_id
    try:
        if version == BOLT_V1:
            layout = V1_RESPONSE if typ == 0 else V1_REQUEST
            head = layout.pack(BOLT_V1, typ, cmd, ver2, rid, codec, extra, cl, hl, len(body))
        else:
            layout = V2_RESPONSE if typ == 0 else V2_REQUEST
            head = layout.pack(BOLT_V2, ver1, typ, cmd, ver2, rid, codec, switch, extra,
                               cl, hl, len(body))  # fmt: skip
    except struct.error as exc:
        raise LocalProtocolError(f"bolt: cannot encode frame {rid}: {exc}") from None
    if not (version == BOLT_V2 and ver1 == 2 and switch & 1):  # no CRC (`has_crc`)
        return b"".join((head, cls, hdr, body))
    crc = zlib.crc32(body, zlib.crc32(hdr, zlib.crc32(cls, zlib.crc32(head))))
    return b"".join((head, cls, hdr, body, U32.pack(crc)))


def encode_v1_reply(resp: ResponseFrame, request_id: int) -> bytes:
    """`resp` as a v1 response under `request_id`, whatever version it came in: a proxy's
    usual reply (a provider's response re-addressed to a v1 caller) without a
    `ResponseFrame` built for it or `encode`'s general path, two Python calls fewer per
    proxied call. Checked as `encode` checks it."""
    _, status, body, cls, hdr, cmd, codec, _, _, _, ver2 = resp
    cl, hl = len(cls), len(hdr)
    if cmd not in _RESPONSE_CODES or cl > MAX_SHORT_LENGTH or hl > MAX_SHORT_LENGTH:
        frame = resp._replace(request_id=request_id, version=BOLT_V1, ver1=1, switch=0)
        return encode(frame)  # raises, naming the field
    try:
        head = V1_RESPONSE.pack(BOLT_V1, 0, cmd, ver2, request_id, codec, status, cl, hl,
                                len(body))  # fmt: skip
    except struct.error as exc:
        raise LocalProtocolError(f"bolt: cannot encode frame {request_id}: {exc}") from None
    return b"".join((head, cls, hdr, body))


def encode_request_as(req: RequestFrame, request_id: int, header: bytes, timeout_ms: int) -> bytes:
    """`req` under `request_id`, with `header` as its header map and `timeout_ms` as its
    timeout: a proxy's usual forward (the caller's request re-addressed, this hop's
    headers and the time left written) without a `RequestFrame` built for it; a v1
    request in one pass, anything else through `encode`. Checked as `encode` checks it."""
    _, body, cls, _, _, oneway, cmd, codec, version, ver1, switch, ver2 = req
    cl, hl = len(cls), len(header)
    if (
        version != BOLT_V1
        or ver1 != 1
        or switch
        or cmd not in _REQUEST_CODES
        or cl > MAX_SHORT_LENGTH
        or hl > MAX_SHORT_LENGTH
    ):
        frame = req._replace(header=header, timeout_ms=timeout_ms)
        return encode(frame, request_id=request_id)  # v2, or refused naming the field
    try:
        head = V1_REQUEST.pack(BOLT_V1, 2 if oneway else 1, cmd, ver2, request_id, codec,
                               timeout_ms, cl, hl, len(body))  # fmt: skip
    except struct.error as exc:
        raise LocalProtocolError(f"bolt: cannot encode frame {request_id}: {exc}") from None
    return b"".join((head, cls, header, body))


def _check(
    rid: int, cl: int, hl: int, known: bool, cmd: int, version: int, ver1: int, switch: int
) -> None:
    """Refuse what struct would silently accept but a peer (or our decoder) would not."""
    if cl > MAX_SHORT_LENGTH or hl > MAX_SHORT_LENGTH:
        raise LocalProtocolError(
            f"bolt: frame {rid}: class name ({cl} bytes) and header map ({hl} bytes) "
            f"must each fit in {MAX_SHORT_LENGTH} bytes"
        )
    if not known:
        raise LocalProtocolError(f"bolt: frame {rid}: command code {cmd} invalid here")
    if version == BOLT_V1:
        if ver1 != 1 or switch != 0:
            raise LocalProtocolError(f"bolt: frame {rid}: v1 frames need ver1=1, switch=0")
    elif version != BOLT_V2 or ver1 not in (1, 2):
        raise LocalProtocolError(f"bolt: frame {rid}: unsupported version {version} / ver1 {ver1}")


def frame_length(data: bytes | bytearray, pos: int = 0) -> int | None:
    """Total length of the frame starting at `data[pos]`, or None if its fixed header is
    incomplete. Raises `RemoteProtocolError` if the bytes cannot start a Bolt frame."""
    fixed = read_fixed_header(data, pos)
    if fixed is None:
        return None
    return _total(fixed)


def _total(fixed: FixedHeader) -> int:
    size, *_, cl, hl, bl, crc = fixed
    return size + cl + hl + bl + crc


def read_request_id(data: bytes | bytearray) -> int:
    """The request id of an encoded frame (only its fixed header is read)."""
    fixed = read_fixed_header(data, 0)
    if fixed is None:
        raise LocalProtocolError(f"bolt: {len(data)} bytes are not a whole fixed header")
    return fixed[7]


def with_request_id(data: bytes, request_id: int) -> bytes:
    """A copy of the encoded frame `data` under another request id."""
    fixed = _whole_frame(data)
    return _patch(data, REQUEST_ID_OFFSET[fixed[1]], _pack_i32(request_id), fixed)


def with_timeout(data: bytes, timeout_ms: int) -> bytes:
    """A copy of the encoded request `data` with another timeout."""
    fixed = _whole_frame(data)
    if fixed[4] == 0:
        raise LocalProtocolError("bolt: a response has no timeout field")
    return _patch(data, TIMEOUT_OFFSET[fixed[1]], _pack_i32(timeout_ms), fixed)


def _pack_i32(value: int) -> bytes:
    try:
        return I32.pack(value)
    except struct.error:
        raise LocalProtocolError(f"bolt: {value} does not fit in a signed 32-bit int") from None


def _whole_frame(data: bytes) -> FixedHeader:
    fixed = read_fixed_header(data, 0)
    total = None if fixed is None or min(fixed[10:13]) < 0 else _total(fixed)
    if fixed is None or total != len(data):
        raise LocalProtocolError(
            f"bolt: expected exactly one encoded frame, got {len(data)} bytes "
            f"for a frame of {total if total is not None else 'unknown'} bytes"
        )
    return fixed


def _patch(data: bytes, off: int, new: bytes, fixed: FixedHeader) -> bytes:
    view = memoryview(data)
    if not fixed[13]:
        return b"".join((view[:off], new, view[off + 4 :]))
    (expected,) = U32.unpack_from(data, len(data) - 4)
    actual = zlib.crc32(view[:-4])
    if actual != expected:
        raise CrcMismatchError(
            f"bolt v2: refusing to patch frame {fixed[7]} with a bad CRC32",
            None,
            expected=expected,
            actual=actual,
        )
    crc = zlib.crc32(view[off + 4 : -4], zlib.crc32(new, zlib.crc32(view[:off])))
    return b"".join((view[:off], new, view[off + 4 : -4], U32.pack(crc)))
