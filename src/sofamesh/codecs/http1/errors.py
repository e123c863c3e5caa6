"""Errors the HTTP/1.1 codecs raise about what the peer sent."""

from __future__ import annotations


class HttpProtocolError(Exception):
    """The peer broke HTTP/1.1 or one of our limits; the connection must close.

    `status` is the response a server should send before closing (400 for
    malformed input, 413 for a body over the limit, 431 for an oversized
    request line or header section, 501 for an unsupported framing or
    method). A client codec uses 502: the upstream sent something unusable.
    `reason` says what was wrong, for the log line and the error body.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


class HttpIncompleteMessage(HttpProtocolError):
    """The peer closed the connection in the middle of a message.

    Separate from malformed input because the remedy differs: nobody is left
    to receive an error response, and a client sees it as a reset upstream.
    """
