"""Per-call timeout: the tighter of the caller's deadline and the service's policy.

The deadline is absolute on the mesh clock and travels downstream: each hop
sends the *remaining* time (`x-sofamesh-timeout-ms` in HTTP, the timeout field
in Bolt, `grpc-timeout` in gRPC), so clocks need not agree across hosts.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.config.model import PolicyConfig
from sofamesh.model import Invocation, Result, Status


class TimeoutFilter:
    def __init__(self, policy_for: Callable[[str], PolicyConfig], clock: Clock) -> None:
        self._policy_for = policy_for
        self._clock = clock

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        now = self._clock.now()
        limit = now + self._policy_for(inv.service).timeout
        if inv.deadline is None or limit < inv.deadline:
            inv.deadline = limit
        remaining = inv.deadline - now
        if remaining <= 0:
            return Result.failure(
                Status.TIMEOUT, f"deadline for {inv.service} passed before the call"
            )
        with anyio.move_on_after(remaining) as scope:
            return await call_next(inv)
        assert scope.cancelled_caught
        return Result.failure(
            Status.TIMEOUT,
            f"{inv.service} did not answer within {remaining * 1000:.0f} ms",
            inv.endpoint,
        )
