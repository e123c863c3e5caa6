"""Per-stream state of the lean codec, and the receive-window policy shared with the connection.

A stream is open from its first HEADERS until both sides ended it (or one
reset it); then the codec forgets it and remembers only *how* it closed
(`CLOSED_BY_RESET` or `CLOSED_BY_END`), which decides whether a late frame is
a stream error or a connection error (RFC 9113 §5.1, §5.4).
"""

from __future__ import annotations

from sofamesh.codecs.h2.events import RawHeaders

CLOSED_BY_RESET = 1
CLOSED_BY_END = 2


class ReceiveWindow:
    """What a peer may still send us, and when to grant it more (RFC 9113 §6.9).

    Bytes are given back only when the application acknowledged them; a
    WINDOW_UPDATE goes out once half the window was consumed (or, when it is
    shut, a quarter or 1 KiB), so a steady stream costs one update per half
    window rather than one per DATA frame. The same rule as h2's, so both
    codecs send the same updates. The codec takes what the peer sent off `available`
    itself (`LeanH2Codec._data`: below zero, the peer overran the window).
    """

    __slots__ = ("available", "maximum", "processed")

    def __init__(self, size: int) -> None:
        self.maximum = size
        self.available = size
        self.processed = 0

    def acknowledge(self, n: int) -> int:
        """The application consumed `n` bytes: the increment to grant now (0: none yet)."""
        self.processed += n
        processed = self.processed
        if (
            self.available == 0 and processed > min(1024, self.maximum // 4)
        ) or processed >= self.maximum // 2:
            increment = min(processed, self.maximum - self.available)
            self.processed = 0
            self.available += increment
            return increment
        return 0

    def resize(self, new_maximum: int) -> None:
        """Our SETTINGS_INITIAL_WINDOW_SIZE took effect (the peer acknowledged it)."""
        self.available += new_maximum - self.maximum
        self.maximum = new_maximum


class LeanStream:
    """One open stream: who ended which side, both directions' windows, and the body still
    owed by the peer's content-length (RFC 9113 §8.1.1; None: it declared none)."""

    __slots__ = (
        "content_left",
        "headers_in",
        "headers_out",
        "id",
        "local_closed",
        "recv",
        "remote_closed",
        "request",
        "send_window",
    )

    def __init__(self, stream_id: int, send_window: int, recv_window: int) -> None:
        self.id = stream_id
        self.headers_in = False  # the request (server) or final response (client) arrived
        self.headers_out = False  # we began our side: a reset after it is not premature
        self.local_closed = False
        self.remote_closed = False
        self.send_window = send_window
        self.recv = ReceiveWindow(recv_window)
        self.content_left: int | None = None
        self.request: RawHeaders | None = None  # the request we sent (client side)
