"""A sliding window of counters in fixed time buckets (Sentinel's ``LeapArray``).

The window covers `interval` seconds split into `buckets` equal buckets. Time
is cut into bucket numbers ``floor(now / width)``; bucket number ``n`` lives in
slot ``n % buckets``, and a slot is cleared when a newer bucket number claims
it -- the "leap" of Sentinel's ``LeapArray.currentWindow``.

Unlike Sentinel, which sums every bucket on each read, the window keeps running
totals: a slot's counts are subtracted from the totals when it is cleared, so
`add` and `total` are O(1) amortised (each bucket is cleared at most once per
time it is entered; a jump past the whole window clears everything at once).

Sentinel's windows: the QPS window of a resource is 1 s in 2 buckets; a
circuit breaker's is ``statIntervalMs`` in one bucket.
"""

from __future__ import annotations

import math


class RollingWindow:
    """`columns` counters (e.g. total, errors, slow) summed over the last `interval` seconds."""

    __slots__ = (
        "_columns",
        "_head",
        "_n",
        "_width",
        "base",
        "cells",
        "end",
        "interval",
        "sums",
    )

    def __init__(self, interval: float, buckets: int, columns: int = 1) -> None:
        if not interval > 0 or not math.isfinite(interval):
            raise ValueError(f"interval must be a positive number of seconds, got {interval}")
        if buckets < 1 or columns < 1:
            raise ValueError("buckets and columns must be at least 1")
        self.interval = interval
        self._width = interval / buckets
        self._n = buckets
        self._columns = columns
        # Public for the callers that count inline on every call (the breaker, a QPS limit):
        # `base if now < end else roll(now)` is now's slot; `sums` the running totals.
        self.cells = [0] * (buckets * columns)
        self.sums = [0] * columns
        self._head = -(1 << 62)  # bucket number of the newest slot; nothing seen yet
        # Until `end` (when the newest bucket ends) nothing rolls and now's slot starts
        # at `base`: most calls of a busy window compare one float instead of dividing.
        self.end = -math.inf
        self.base = 0

    def roll(self, now: float) -> int:
        """Bring the window up to `now`; return the offset of now's slot in `cells`."""
        if now < self.end:
            return self.base
        bucket = int(now // self._width)
        head = self._head
        if bucket > head:
            if bucket - head >= self._n:
                self._clear_all()
            else:
                for stale in range(head + 1, bucket + 1):
                    self._clear_slot(stale % self._n)
            self._head = head = bucket
            self.end = (bucket + 1) * self._width
            self.base = (bucket % self._n) * self._columns
        # A late `add` for a bucket already left behind lands in the newest one:
        # callers pass a monotonic `now`, so this only absorbs reordering noise.
        return (head % self._n) * self._columns

    def _clear_slot(self, slot: int) -> None:
        cells, totals, cols = self.cells, self.sums, self._columns
        base = slot * cols
        for c in range(cols):
            totals[c] -= cells[base + c]
            cells[base + c] = 0

    def _clear_all(self) -> None:
        # In place: callers may hold a reference to the lists across a roll.
        self.cells[:] = [0] * len(self.cells)
        self.sums[:] = [0] * self._columns

    def add(self, now: float, column: int = 0, amount: int = 1) -> None:
        slot = self.base if now < self.end else self.roll(now)
        self.cells[slot + column] += amount
        self.sums[column] += amount

    def total(self, now: float, column: int = 0) -> int:
        """The sum of `column` over the window ending at `now`."""
        if now >= self.end:
            self.roll(now)
        return self.sums[column]

    def totals(self, now: float) -> tuple[int, ...]:
        self.roll(now)
        return tuple(self.sums)

    def reset(self) -> None:
        self._clear_all()
