"""Inbound: refuse work whose caller has already given up."""

from __future__ import annotations

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.model import Invocation, Result, Status


class InboundDeadlineFilter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        if inv.deadline is not None and inv.deadline <= self._clock.now():
            return Result.failure(Status.TIMEOUT, f"deadline for {inv.service} passed on arrival")
        return await call_next(inv)
