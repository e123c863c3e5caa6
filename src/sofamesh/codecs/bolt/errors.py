"""Everything the Bolt codec raises: one hierarchy under `BoltProtocolError`.

As in h11, `RemoteProtocolError` means the peer sent something that is not valid Bolt
and `LocalProtocolError` means we asked the codec to produce something invalid.

A remote error is *fatal* when the byte stream can no longer be split into frames
(unknown protocol byte, impossible or over-limit lengths, bad CRC, truncated stream):
the decoder stays broken and the caller must close the connection. It is *not fatal*
when the frame was delimited and skipped (unknown command code, malformed header map):
the caller may answer it with an error status and keep reading.

Once the fixed header was readable, the error carries it in `header` (request id,
version, ver1, switch, codec), so the caller can address an error response to it with
`frames.reply(err.header, status=...)` before closing. `str(err)` names the problem and
is meant for the log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sofamesh.codecs.bolt.frames import FrameHeader


class BoltProtocolError(Exception):
    """Base class of every error the Bolt codec raises."""

    fatal = True

    def __init__(self, message: str, header: FrameHeader | None = None) -> None:
        super().__init__(message)
        self.header = header

    @property
    def request_id(self) -> int | None:
        return None if self.header is None else self.header.request_id

    @property
    def version(self) -> int | None:
        return None if self.header is None else self.header.version


class LocalProtocolError(BoltProtocolError, ValueError):
    """We tried to encode a frame or field that Bolt cannot carry."""


class RemoteProtocolError(BoltProtocolError):
    """The peer sent bytes that are not a valid Bolt frame."""


class UnknownProtocolError(RemoteProtocolError):
    """The first byte of a frame is neither 0x01 (Bolt v1) nor 0x02 (Bolt v2)."""


class UnsupportedVersionError(RemoteProtocolError):
    """A Bolt v2 frame whose ver1 byte is neither 1 nor 2 (`RpcProtocolV2`)."""


class UnknownCommandTypeError(RemoteProtocolError):
    """The type byte is not 0 (response), 1 (request) or 2 (oneway)."""


class InvalidLengthError(RemoteProtocolError):
    """classLen, headerLen or contentLen is negative (they are signed on the wire)."""


class FrameTooLargeError(RemoteProtocolError):
    """A length in the fixed header exceeds the configured `BoltLimits`."""

    def __init__(self, message: str, header: FrameHeader | None, *, size: int, limit: int) -> None:
        super().__init__(message, header)
        self.size = size
        self.limit = limit


class CrcMismatchError(RemoteProtocolError):
    """The CRC32 trailer of a Bolt v2 frame does not match its bytes."""

    def __init__(
        self, message: str, header: FrameHeader | None, *, expected: int, actual: int
    ) -> None:
        super().__init__(message, header)
        self.expected = expected
        self.actual = actual


class TruncatedFrameError(RemoteProtocolError):
    """The stream ended in the middle of a frame."""


class UnknownCommandCodeError(RemoteProtocolError):
    """The command code does not fit the type (e.g. a request with code RPC_RESPONSE).

    Not fatal: the frame was skipped; its `header` says whom to answer.
    """

    fatal = False


class HeaderMapError(RemoteProtocolError):
    """The header map is malformed or has more entries than allowed.

    Not fatal when raised by the decoder: the frame was skipped.
    """

    fatal = False
