"""Count every call per direction, service and (inbound) caller, with its latency and code."""

from __future__ import annotations

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.model import Invocation, Result
from sofamesh.stats import MAX_SERVICES, CallStats, Stats


class StatsFilter:
    def __init__(self, stats: Stats, direction: str, clock: Clock) -> None:
        self._stats = stats
        self._direction = direction
        # Outbound, the caller is always this app: one row per service is enough.
        self._by_caller = direction == "inbound"
        self._clock = clock
        # Outbound rows by service name, found with one look-up; bounded like the stats' own.
        self._rows: dict[str, CallStats] = {}

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        cs = None if self._by_caller else self._rows.get(inv.service)
        if cs is None:
            cs = self._row(inv)
        start = self._clock.now()
        cs.active += 1
        try:
            result = await call_next(inv)
        finally:
            cs.active -= 1
        cs.record(result.status, (self._clock.now() - start) * 1000, result.code)
        return result

    def _row(self, inv: Invocation) -> CallStats:
        if self._by_caller:
            return self._stats.service(self._direction, inv.service, inv.caller)
        cs = self._stats.service(self._direction, inv.service)
        if len(self._rows) < MAX_SERVICES:
            self._rows[inv.service] = cs
        return cs
