"""A frame begun and not yet whole on a multiplexed connection (Bolt, Dubbo): its two clocks.

A peer that sends most of a large frame and stops pins what it sent. Two limits bound it:
the whole frame must arrive within `frame_timeout` of its first byte (Envoy's
`request_headers_timeout`, for a whole frame), and it must keep growing: one that has not
grown for `progress_timeout` is dropped with its connection (nginx's `client_body_timeout`,
a time between two successive reads; Envoy's `stream_idle_timeout`). The second is what
frees a stalled 7 MiB frame within seconds while a large frame on a slow link, still
arriving, keeps the longer whole-frame bound.

The bytes pending count in the process's buffer budget (`transport/budget.py`) until the
frame is whole or the connection ends. The connection's one timer (`nap`) sleeps its
usual tick, but a frame past `WATCH_CLOSELY` bytes wakes it and is checked four times
per progress limit (so it goes within 1.25 times the limit): a small frame pins little,
and waking the timer for every read that ends mid-frame would cost a busy connection a
task switch per read.
"""

from __future__ import annotations

import time

import anyio

from sofamesh.transport.budget import OVERLOAD
from sofamesh.transport.workers import Signal, event_class

WATCH_CLOSELY = 256 * 1024  # bytes of a frame begun past which its progress is watched closely


class PartialFrame:
    """The pending bytes of one connection's unfinished frame, and when it began and grew."""

    __slots__ = ("_event", "_wake", "grew", "held", "since")

    def __init__(self) -> None:
        self.held = 0  # bytes of a frame begun and not yet whole (in the buffer budget)
        self.since = 0.0  # when that frame began
        self.grew = 0.0  # when it last grew
        self._event = event_class()
        self._wake: Signal | None = None

    def track(self, pending: int, whole: bool) -> None:
        """After a read: `pending` bytes of a frame are buffered; `whole`, frames completed."""
        now = time.monotonic()
        held = self.held
        if pending and (whole or not held):
            self.since = now
        if whole or pending != held:
            self.grew = now
        OVERLOAD.held += pending - held
        self.held = pending
        if pending >= WATCH_CLOSELY > held and self._wake is not None:
            self._wake.set()  # a large frame: the timer looks at it closely from now

    def overdue(self, frame_timeout: float, progress_timeout: float) -> str | None:
        """Why the frame must be dropped now ("timeout", "stalled"), or None."""
        if not self.held:
            return None
        now = time.monotonic()
        if now - self.since >= frame_timeout:
            return "timeout"
        if now - self.grew >= progress_timeout:
            return "stalled"
        return None

    async def nap(self, tick: float, progress_timeout: float) -> None:
        """Sleep `tick`, or a quarter of `progress_timeout` while a large frame is pending; a frame
        growing past `WATCH_CLOSELY` meanwhile ends the sleep early."""
        if self.held >= WATCH_CLOSELY:
            tick = min(tick, progress_timeout / 4)
        self._wake = wake = self._event()
        try:
            with anyio.move_on_after(tick):
                await wake.wait()
        finally:
            self._wake = None

    def release(self) -> None:
        """The connection ended: its pending bytes leave the budget."""
        OVERLOAD.held -= self.held
        self.held = 0
