"""`FrameDecoder`: bytes in, Dubbo frames out (sans-IO).

Feed it with `receive_data(bytes)`, take frames with `next_frame()` (None: need more)
or by iterating. A bad magic or a body over `max_body_size` raises a fatal
`RemoteProtocolError` (carrying the header when it was readable) and the decoder stays
broken: the stream cannot be split into frames any more. Bodies are never interpreted.
"""

from __future__ import annotations

from collections.abc import Iterator

from sofamesh.codecs.bolt.receive_buffer import ReceiveBuffer
from sofamesh.codecs.dubbo.errors import BadMagicError, FrameTooLargeError, RemoteProtocolError
from sofamesh.codecs.dubbo.frames import Frame, FrameHeader, RequestFrame, ResponseFrame
from sofamesh.codecs.dubbo.limits import DEFAULT_LIMITS, DubboLimits
from sofamesh.codecs.dubbo.wire import (
    FLAG_EVENT,
    FLAG_REQUEST,
    FLAG_TWO_WAY,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    SERIALIZATION_MASK,
)

_unpack_header = HEADER.unpack_from
_new = tuple.__new__


class FrameDecoder:
    """Splits a byte stream into `RequestFrame` and `ResponseFrame` values."""

    __slots__ = ("_broken", "_buf", "_header", "limits")

    def __init__(self, limits: DubboLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = ReceiveBuffer()
        self._header: FrameHeader | None = None  # read, its body not complete yet
        self._broken: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._buf.append(data)

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def next_frame(self) -> Frame | None:
        if self._broken is not None:
            raise self._broken
        header = self._header
        if header is None:
            if len(self._buf) < HEADER_SIZE:
                return None
            header = self._header = self._read_header()
        if len(self._buf) < header.body_length:
            return None
        self._header = None
        body = self._buf.take(header.body_length) if header.body_length else b""
        return _frame(header, body)

    def _read_header(self) -> FrameHeader:
        magic, flags, status, rid, length = _unpack_header(self._buf.peek(HEADER_SIZE))
        if magic != MAGIC:
            raise self._break(BadMagicError(f"bad magic 0x{magic:04x}: not a Dubbo frame"))
        header = FrameHeader(flags, status, rid, length)
        if length > self.limits.max_body_size:
            raise self._break(
                FrameTooLargeError(
                    f"a body of {length} bytes is over the limit of {self.limits.max_body_size}",
                    header,
                )
            )
        self._buf.skip(HEADER_SIZE)
        return header

    def _break(self, error: RemoteProtocolError) -> RemoteProtocolError:
        self._broken = error
        self._buf.clear()
        return error


def _frame(h: FrameHeader, body: bytes) -> Frame:
    flags = h.flags
    ser = flags & SERIALIZATION_MASK
    event = bool(flags & FLAG_EVENT)
    if flags & FLAG_REQUEST:
        return _new(RequestFrame, (h.request_id, body, ser, bool(flags & FLAG_TWO_WAY), event))
    return _new(ResponseFrame, (h.request_id, h.status, body, ser, event))
