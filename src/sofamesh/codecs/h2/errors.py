"""What the HTTP/2 codecs raise: the peer broke the connection, or we used a stream that is gone."""

from __future__ import annotations


class H2ConnectionError(Exception):
    """The peer broke HTTP/2; a GOAWAY with `error_code` is queued in `data_to_send()`."""

    def __init__(self, error_code: int, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code
        self.reason = reason


class StreamGone(Exception):
    """We tried to use a stream the peer already reset or that has ended."""


class LocalProtocolError(Exception):
    """We misused HTTP/2 (DATA before HEADERS, trailers that do not end the stream, a stream
    past the peer's limit): a bug of the caller, not of the peer."""
