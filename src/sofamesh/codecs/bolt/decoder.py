"""A sans-IO Bolt frame decoder: bytes in, frames out.

    decoder = FrameDecoder(limits)
    decoder.receive_data(chunk)          # whatever the socket returned
    for frame in decoder:                # every complete frame buffered so far
        ...
    decoder.receive_eof()                # the peer closed; a partial frame is an error

Theory of operation. Received chunks wait in a `ReceiveBuffer`. `next_frame` reads the
fixed header as soon as it is complete (`wire.read_fixed_header`) and checks every
length against the limits *before* waiting for the rest, so a peer announcing a 2 GiB
body is refused on its first 24 bytes, and nothing is ever allocated from a length the
peer wrote. It then waits, without looking again, until the whole frame is buffered.
A frame inside one chunk (the common case: a read holds whole frames) is sliced out of
that chunk, its CRC checked in place; a frame spread over chunks is taken out field by
field. Either way the body is copied once, and not at all when it is a whole chunk.

Errors: see `errors.py`. A fatal error leaves the decoder broken (every later call
re-raises it); a non-fatal one skipped its frame and decoding continues.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from sofamesh.codecs.bolt.codes import STATUS_BY_CODE, CommandCode, status_of
from sofamesh.codecs.bolt.errors import (
    CrcMismatchError,
    FrameTooLargeError,
    HeaderMapError,
    InvalidLengthError,
    LocalProtocolError,
    RemoteProtocolError,
    TruncatedFrameError,
    UnknownCommandCodeError,
)
from sofamesh.codecs.bolt.frames import Frame, FrameHeader, RequestFrame, ResponseFrame
from sofamesh.codecs.bolt.headers import check_header_map
from sofamesh.codecs.bolt.limits import DEFAULT_LIMITS, BoltLimits
from sofamesh.codecs.bolt.receive_buffer import ReceiveBuffer
from sofamesh.codecs.bolt.wire import (
    U32,
    V1_REQUEST,
    V1_RESPONSE,
    V2_REQUEST,
    FixedHeader,
    read_fixed_header,
)

_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (3x faster)
_REQUEST_CODES = (CommandCode.HEARTBEAT, CommandCode.RPC_REQUEST)
_RESPONSE_CODES = (CommandCode.HEARTBEAT, CommandCode.RPC_RESPONSE)
_MAX_FIXED = V2_REQUEST.size
_status = STATUS_BY_CODE.get  # `status_of`, without its Python frame
_V1_FIXED = V1_REQUEST.size  # a v1 request's fixed header; a response's is 2 bytes shorter


def _header_of(fixed: FixedHeader) -> FrameHeader:
    _, version, ver1, switch, typ, cmd, ver2, rid, codec, *_ = fixed
    return FrameHeader(version, ver1, switch, typ, cmd, ver2, rid, codec)


class FrameDecoder:
    """Splits a byte stream into `RequestFrame`s and `ResponseFrame`s."""

    __slots__ = (
        "_buf", "_check_requests", "_eof", "_error", "_limits", "_max_body", "_max_class",
        "_max_entries", "_max_header", "_need",
    )  # fmt: skip

    def __init__(
        self, limits: BoltLimits = DEFAULT_LIMITS, *, check_request_headers: bool = True
    ) -> None:
        self._limits = limits
        # False: a request's header map is not walked here; its reader checks it (a
        # proxy's `HeaderPicker` walks it anyway, and one walk costs as much as the rest
        # of the frame's decoding). Responses' are always checked.
        self._check_requests = check_request_headers
        # Copied out of the attrs instance: read on every frame.
        self._max_body = limits.max_body_size
        self._max_class = limits.max_class_name_size
        self._max_header = limits.max_header_size
        self._max_entries = limits.max_header_entries
        self._buf = ReceiveBuffer()
        self._need = 0  # size of the frame whose header was read but whose bytes are not all in
        self._eof = False
        self._error: RemoteProtocolError | None = None

    @property
    def limits(self) -> BoltLimits:
        return self._limits

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return self._buf.size

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the peer (copied if not `bytes`). Ignored after a fatal error."""
        if self._eof:
            raise LocalProtocolError("bolt: receive_data() after receive_eof()")
        if self._error is None:
            self._buf.append(data)

    def receive_eof(self) -> None:
        """The peer closed its side; a partial frame left in the buffer is an error."""
        self._eof = True

    def next_frame(self) -> Frame | None:
        """Return the next complete frame, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        pending = self._buf
        chunks = pending._chunks  # `pending.first()`, inline: read twice per proxied call
        if chunks and pending.size >= self._need:
            buf, pos = chunks[0], pending._pos
            avail = len(buf) - pos
            if avail >= _V1_FIXED and buf[pos] == 1:
                frame = self._whole_v1(buf, pos, avail)  # raises only non-fatal errors
                if frame is not None:
                    return frame
        try:
            frame = self._decode()
        except RemoteProtocolError as exc:
            if exc.fatal:
                self._fail(exc)
            raise
        if frame is None and self._eof and self._buf.size:
            err = TruncatedFrameError(f"bolt: stream ended inside a frame ({self.buffered} bytes)")
            self._fail(err)
            raise err
        return frame

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.next_frame, None)

    def _fail(self, exc: RemoteProtocolError) -> None:
        self._error = exc
        self._buf.clear()

    def _decode(self) -> Frame | None:
        pending = self._buf
        queued = pending.size
        if queued < self._need or not queued:
            return None
        buf, pos = pending.first()
        avail = len(buf) - pos
        if avail < _MAX_FIXED and avail < queued:  # the fixed header spans chunks
            fixed = read_fixed_header(pending.peek(_MAX_FIXED), 0)
        else:
            fixed = read_fixed_header(buf, pos)
        return None if fixed is None else self._decode_frame(fixed, buf, pos, avail)

    def _whole_v1(self, buf: bytes, pos: int, avail: int) -> Frame | None:
        """The common frame in one pass: v1, valid lengths, whole in the first chunk,
        command code valid for its type. None sends anything else down the general path
        (`read_fixed_header`, `_decode_frame`, `_build`), which consumes nothing before
        it decides, so both paths raise and return alike; this one saves a proxied call
        about ten Python calls."""
        typ = buf[pos + 1]
        if typ == 0:
            _, _, cmd, ver2, rid, codec, extra, cl, hl, bl = V1_RESPONSE.unpack_from(buf, pos)
            a, codes = pos + V1_RESPONSE.size, _RESPONSE_CODES
        elif typ <= 2:
            _, _, cmd, ver2, rid, codec, extra, cl, hl, bl = V1_REQUEST.unpack_from(buf, pos)
            a, codes = pos + _V1_FIXED, _REQUEST_CODES
        else:
            return None
        b = a + cl
        c = b + hl
        end = c + bl
        if (
            end - pos > avail
            or cmd not in codes
            or cl > self._max_class
            or hl > self._max_header
            or bl > self._max_body
            or (cl | hl | bl) < 0
        ):
            return None
        pending = self._buf
        self._need = 0
        pending.size -= end - pos  # `pending.skip`, inline: the frame is inside the chunk
        if end - pos < avail:
            pending._pos = end
        else:  # ... and ends it
            pending._chunks.popleft()
            pending._pos = 0
        hdr = buf[b:c]
        if hdr and (typ == 0 or self._check_requests):
            try:
                check_header_map(hdr, self._max_entries)
            except HeaderMapError as exc:
                exc.header = FrameHeader(1, 1, 0, typ, cmd, ver2, rid, codec)
                raise
        if typ == 0:
            return _new(ResponseFrame, (
                rid, _status(extra, extra), buf[c:end], buf[a:b], hdr, cmd, codec, 1, 1, 0, ver2,
            ))  # fmt: skip
        return _new(RequestFrame, (
            rid, buf[c:end], buf[a:b], hdr, extra, typ == 2, cmd, codec, 1, 1, 0, ver2,
        ))  # fmt: skip

    def _decode_frame(self, fixed: FixedHeader, buf: bytes, pos: int, avail: int) -> Frame | None:
        """Check the lengths in `fixed`, then take the frame out once it is all there."""
        pending = self._buf
        size, _, _, _, _, _, _, _, _, _, cl, hl, bl, crc = fixed
        if (
            cl > self._max_class
            or hl > self._max_header
            or bl > self._max_body
            or (cl | hl | bl) < 0
        ):
            self._refuse_lengths(fixed)
        total = size + cl + hl + bl + crc
        if pending.size < total:
            self._need = total
            return None
        self._need = 0
        # From here on the frame is consumed, whatever happens.
        if avail < total:
            return self._spread_frame(fixed)
        pending.skip(total)
        a = pos + size
        b = a + cl
        c = b + hl
        if crc:
            with memoryview(buf) as view:
                self._check_crc(fixed, zlib.crc32(view[pos : c + bl]), buf, c + bl)
        return self._build(fixed, buf[a:b], buf[b:c], buf[c : c + bl])

    def _spread_frame(self, fixed: FixedHeader) -> Frame:
        """Take out a frame that spans several received chunks."""
        size, cl, hl, bl, crc = fixed[0], fixed[10], fixed[11], fixed[12], fixed[13]
        pending = self._buf
        head = pending.take(size + cl + hl)
        body = pending.take(bl)
        if crc:
            self._check_crc(fixed, zlib.crc32(body, zlib.crc32(head)), pending.take(crc), 0)
        return self._build(fixed, head[size : size + cl], head[size + cl :], body)

    def _build(self, fixed: FixedHeader, cls: bytes, hdr: bytes, body: bytes) -> Frame:
        _, version, ver1, switch, typ, cmd, ver2, rid, codec, extra, *_ = fixed
        if cmd not in (_RESPONSE_CODES if typ == 0 else _REQUEST_CODES):
            raise UnknownCommandCodeError(
                f"bolt: command code {cmd} is not valid for command type {typ}", _header_of(fixed)
            )
        if hdr and (typ == 0 or self._check_requests):
            try:
                check_header_map(hdr, self._max_entries)
            except HeaderMapError as exc:
                exc.header = _header_of(fixed)
                raise
        if typ == 0:
            return _new(ResponseFrame, (
                rid, status_of(extra), body, cls, hdr, cmd, codec, version, ver1, switch, ver2,
            ))  # fmt: skip
        return _new(RequestFrame, (
            rid, body, cls, hdr, extra, typ == 2, cmd, codec, version, ver1, switch, ver2,
        ))  # fmt: skip

    def _refuse_lengths(self, fixed: FixedHeader) -> None:
        cl, hl, bl = fixed[10:13]
        if cl < 0 or hl < 0 or bl < 0:
            raise InvalidLengthError(
                f"bolt: negative length in frame {fixed[7]} "
                f"(classLen {cl}, headerLen {hl}, contentLen {bl})",
                _header_of(fixed),
            )
        for what, size, limit in (
            ("body", bl, self._max_body),
            ("header map", hl, self._max_header),
            ("class name", cl, self._max_class),
        ):
            if size > limit:
                raise FrameTooLargeError(
                    f"bolt: {what} of {size} bytes in frame {fixed[7]} "
                    f"exceeds the limit of {limit}",
                    _header_of(fixed),
                    size=size,
                    limit=limit,
                )

    @staticmethod
    def _check_crc(fixed: FixedHeader, actual: int, trailer: bytes, at: int) -> None:
        (expected,) = U32.unpack_from(trailer, at)
        if actual != expected:
            raise CrcMismatchError(
                f"bolt v2: CRC32 mismatch in frame {fixed[7]}: "
                f"trailer 0x{expected:08x}, computed 0x{actual:08x}",
                _header_of(fixed),
                expected=expected,
                actual=actual,
            )
