"""Flood and rapid-reset defences for one HTTP/2 connection, on h2's frame dispatch.

A peer can make a connection cost far more than its bytes (CVE-2023-44487, CVE-2019-9512..9518):

- **Rapid reset**: open a stream and reset it at once, over and over; each stream
  starts work the peer never waits for. A reset that arrives before the response
  began is *premature*; past `premature_reset_total_stream_count` streams, more than
  half of them premature (before that, half that count) ends the connection. Envoy's
  `overload.premature_reset_total_stream_count` (500) and 50 % rule; Envoy calls a
  reset premature within `premature_reset_min_stream_lifetime_seconds` (1 s) of the
  stream's start, which, without a clock, is here "before its response began".
  Streams we reset for malformed headers count too (the rapid reset's other form).
- **Control-frame floods**: each PING and SETTINGS obliges an ACK; from a peer that
  does not read, those pile up unsent. More than `max_outbound_control_frames`
  (Envoy: 1000) queued since the writer last took our bytes ends the connection.
- **Too many streams**: a stream opened past `max_concurrent_streams` is refused
  (RST_STREAM REFUSED_STREAM, RFC 9113 §5.1.2), as Envoy does, where h2 would end
  the whole connection; the other streams live on.
- **WINDOW_UPDATE and PRIORITY floods** cost CPU and no ACK. Envoy's bounds:
  WINDOW_UPDATEs at most 5 + 2 x (streams + `max_inbound_window_update_frames_per_data_frame_sent`
  (10) x DATA frames we sent); PRIORITYs at most `max_inbound_priority_frames_per_stream`
  (100) x (1 + streams).

Each ends the connection with GOAWAY(ENHANCE_YOUR_CALM): the guard raises h2's
`DenialOfServiceError` from inside its frame dispatch, so h2 stops at the offending
frame and queues the GOAWAY itself. Frames are counted as h2 parses them, before it
looks at their stream, so floods on closed or unknown streams count as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.connection
from h2.exceptions import DenialOfServiceError
from hyperframe.frame import (
    Frame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from sofamesh.codecs.h2.lean_guard import LeanGuard
from sofamesh.codecs.h2.limits import H2Limits

REFUSED_STREAM = 0x7

Dispatch = Callable[[Frame], Any]


class FloodGuard(LeanGuard):
    """`LeanGuard`'s counters and limits, fed from h2's frame dispatch."""

    __slots__ = ("_h2",)

    def __init__(self, conn: h2.connection.H2Connection, limits: H2Limits) -> None:
        super().__init__(limits)
        self._h2 = conn
        table = conn._frame_dispatch_table
        for kind, hook in (
            (PingFrame, self._ping),
            (SettingsFrame, self._ping),
            (WindowUpdateFrame, self._window_update),
            (PriorityFrame, self._priority),
            (RstStreamFrame, self._rst_stream),
        ):
            table[kind] = _before(hook, table[kind])
        handle_headers = table[HeadersFrame]
        table[HeadersFrame] = lambda frame: self._headers(frame, handle_headers)

    # -- the hooks, called before h2 handles the frame ----------------------------------

    def _ping(self, frame: Frame) -> None:  # a PING or SETTINGS
        if "ACK" not in frame.flags:
            self.owe_ack()

    def _window_update(self, _frame: Frame) -> None:
        self.window_update()

    def _priority(self, _frame: Frame) -> None:
        self.priority()

    def _headers(self, frame: Frame, handle: Dispatch) -> Any:
        conn = self._h2
        if conn.config.client_side or frame.stream_id <= conn.highest_inbound_stream_id:
            return handle(frame)  # trailers, or a response
        self.inbound_streams += 1
        full = conn.open_inbound_streams >= self._limits.max_concurrent_streams
        frames, events = handle(frame)  # decoded even when refused: HPACK state is shared
        if not full:
            return frames, events
        self.refused_streams += 1
        conn.reset_stream(frame.stream_id, REFUSED_STREAM)  # safe to retry (RFC 9113 §8.7)
        return frames, [e for e in events if getattr(e, "stream_id", None) != frame.stream_id]

    def _rst_stream(self, frame: Frame) -> None:
        if self._h2.config.client_side:
            return  # an upstream resetting our requests costs it, not us
        stream = self._h2.streams.get(frame.stream_id)
        if stream is not None and not stream.state_machine.headers_sent:
            self.premature()

    def _trip(self, why: str) -> None:
        self.tripped = why
        raise DenialOfServiceError(why)


def _before(hook: Callable[[Frame], None], handle: Dispatch) -> Dispatch:
    def guarded(frame: Frame) -> Any:
        hook(frame)
        return handle(frame)

    return guarded
