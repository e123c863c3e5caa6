"""Count every call per direction, service and (inbound) caller, with its latency and code."""

from __future__ import annotations

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.model import Invocation, Result
from sofamesh.stats import Stats


class StatsFilter:
    def __init__(self, stats: Stats, direction: str, clock: Clock) -> None:
        self._stats = stats
        self._direction = direction
        # Outbound, the caller is always this app: one row per service is enough.
        self._by_caller = direction == "inbound"
        self._clock = clock

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        cs = self._stats.service(
            self._direction, inv.service, inv.caller if self._by_caller else ""
        )
        start = self._clock.now()
        cs.active += 1
        try:
            result = await call_next(inv)
        finally:
            cs.active -= 1
        cs.record(result.status, (self._clock.now() - start) * 1000, result.code)
        return result
