"""Time, injectable: production reads anyio's clock, tests drive a fake one.

Governance state machines never read time themselves: they take `now`.
Filters ask a `Clock` for it, so a test can move time without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...


class MonotonicClock:
    """The process's monotonic clock (the same one anyio's deadlines use on asyncio)."""

    # The C function itself, not a method around it: a proxied call reads the clock
    # about ten times.
    now = staticmethod(time.monotonic)


class FakeClock:
    """A clock that moves only when told to, for tests of time-based rules."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds
