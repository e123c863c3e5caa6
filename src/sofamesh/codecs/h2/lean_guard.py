"""The flood and rapid-reset defences, as counters a codec calls per frame.

The attacks and Envoy's defaults are in `guard.py`'s docstring. The lean codec
calls a hook after it parsed a frame and before it acts on it, so floods on
closed or unknown streams count as well; a tripped limit raises `Calm` and the
codec answers with GOAWAY(ENHANCE_YOUR_CALM). `guard.FloodGuard` feeds the same
counters from the h2 library's frame dispatch (the reference codec).
"""

from __future__ import annotations

from sofamesh.codecs.h2.limits import H2Limits


class Calm(Exception):
    """A flood limit was passed: the connection ends with ENHANCE_YOUR_CALM."""


class LeanGuard:
    """Counts one connection's frames and refuses the peer once a limit is passed."""

    __slots__ = (
        "_limits",
        "content_length_errors",
        "control_queued",
        "data_frames_sent",
        "inbound_streams",
        "premature_resets",
        "priorities",
        "refused_streams",
        "tripped",
        "window_updates",
    )

    def __init__(self, limits: H2Limits) -> None:
        self._limits = limits
        self.content_length_errors = 0  # streams reset for it (RFC 9113 §8.1.1), not a flood
        self.control_queued = 0  # ACKs owed since the writer last took our bytes
        self.data_frames_sent = 0
        self.inbound_streams = 0
        self.premature_resets = 0
        self.priorities = 0
        self.refused_streams = 0
        self.window_updates = 0
        self.tripped = ""  # the limit that ended the connection, for logs and tests

    def owe_ack(self) -> None:
        """A PING or SETTINGS that obliges an ACK arrived."""
        self.control_queued += 1
        limit = self._limits.max_outbound_control_frames
        if self.control_queued > limit:
            self._trip(f"more than {limit} control frames queued (max_outbound_control_frames)")

    def window_update(self) -> None:
        self.window_updates += 1
        per_data = self._limits.max_inbound_window_update_frames_per_data_frame_sent
        if self.window_updates > 5 + 2 * (self.inbound_streams + per_data * self.data_frames_sent):
            self._trip(
                f"{self.window_updates} WINDOW_UPDATE frames for {self.data_frames_sent} DATA"
                " frames sent (max_inbound_window_update_frames_per_data_frame_sent)"
            )

    def priority(self) -> None:
        self.priorities += 1
        per_stream = self._limits.max_inbound_priority_frames_per_stream
        if self.priorities > per_stream * (1 + self.inbound_streams):
            self._trip(
                f"{self.priorities} PRIORITY frames for {self.inbound_streams} streams"
                " (max_inbound_priority_frames_per_stream)"
            )

    def stream_refused_or_malformed(self) -> None:
        """We reset a stream the peer just opened: as costly to us as its own reset."""
        self.premature()

    def premature(self) -> None:
        self.premature_resets += 1
        floor = self._limits.premature_reset_total_stream_count
        if self.premature_resets * 2 >= max(self.inbound_streams, floor):
            self._trip(
                f"{self.premature_resets} of {self.inbound_streams} streams reset before their"
                " response (premature_reset_total_stream_count)"
            )

    def _trip(self, why: str) -> None:
        self.tripped = why
        raise Calm(why)
