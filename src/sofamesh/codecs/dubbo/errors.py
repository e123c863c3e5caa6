"""Everything the Dubbo codec raises: one hierarchy under `DubboProtocolError`.

As in h11 (and the Bolt codec), `RemoteProtocolError` means the peer sent something that
is not valid Dubbo, `LocalProtocolError` that we asked the codec for something invalid.
A remote error is *fatal* when the stream can no longer be split into frames (bad magic,
a body over the limit): the connection must close. Once the header was readable the
error carries it (`header`), so the caller can answer that request id before closing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sofamesh.codecs.dubbo.frames import FrameHeader


class DubboProtocolError(Exception):
    """Base class of every error the Dubbo codec raises."""

    fatal = True

    def __init__(self, message: str, header: FrameHeader | None = None) -> None:
        super().__init__(message)
        self.header = header


class LocalProtocolError(DubboProtocolError, ValueError):
    """We tried to encode something Dubbo cannot carry."""


class RemoteProtocolError(DubboProtocolError):
    """The peer sent bytes that are not a valid Dubbo frame or body."""


class BadMagicError(RemoteProtocolError):
    """A frame does not start with 0xdabb: the stream is not (or no longer) Dubbo."""


class FrameTooLargeError(RemoteProtocolError):
    """A body longer than the decoder's `max_body_size`."""


class BodyError(RemoteProtocolError):
    """A delimited frame whose body is not what its kind needs (not fatal)."""

    fatal = False


class UnsupportedSerializationError(BodyError):
    """A body in a serialization other than Hessian 2: carried, never decoded."""
