"""Inbound: refuse work whose caller has already given up."""

from __future__ import annotations

from collections.abc import Awaitable

from sofamesh.chain import Handler, completed
from sofamesh.clock import Clock
from sofamesh.model import Invocation, Result, Status


class InboundDeadlineFilter:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        now_of = self._clock.now

        def check(inv: Invocation) -> Awaitable[Result]:
            # Acts on the way in only: no coroutine frame of its own on every inbound call.
            # The call's reading when the stats filter took one (`sofamesh.chain`).
            if inv.deadline is not None and inv.deadline <= (
                now_of() if inv.now is None else inv.now
            ):
                return completed(
                    Result.failure(Status.TIMEOUT, f"deadline for {inv.service} passed on arrival")
                )
            return call_next(inv)

        return check
