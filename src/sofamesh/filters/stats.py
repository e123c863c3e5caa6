"""Count every call per direction, service and (inbound) caller, with its latency and code.

A name no registry, route or listener knows is the caller's choice, so it is counted
under one row (`stats.UNKNOWN_SERVICES`) rather than its own: `known` says, after the
call, whether it named a service that exists. Only a name without a row of its own yet
is asked about; the rows of known services are found by one dict look-up, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.model import Invocation, Result, Status
from sofamesh.stats import UNKNOWN_SERVICES, CallStats, Stats

# Whether a call's service exists, judged from its name and how the call went.
Known = Callable[[str, Result], bool]


def known_unless_no_endpoint(exists: Callable[[str], bool]) -> Known:
    """Known unless the call found no endpoint and `exists` does not know the name either
    (a provider that left is still known: its cluster stays; a made-up name's does not)."""

    def known(service: str, result: Result) -> bool:
        return result.status is not Status.NO_ENDPOINT or exists(service)

    return known


def never_known(_service: str, _result: Result) -> bool:
    """A catch-all's names: forwarded on purpose, yet none is a service anyone declared."""
    return False


class StatsFilter:
    def __init__(
        self, stats: Stats, direction: str, clock: Clock, *, known: Known | None = None
    ) -> None:
        """`known`: None counts every name apart (up to `Stats.max_services`)."""
        self._stats = stats
        self._direction = direction
        # Outbound, the caller is always this app: one row per service is enough.
        self._by_caller = direction == "inbound"
        self._clock = clock
        self._known = known
        # Outbound rows by service name, found with one look-up and no key tuple; bounded
        # like the stats' own rows.
        self._rows: dict[str, CallStats] = {}

    def invoke(self, inv: Invocation, call_next: Handler) -> Awaitable[Result]:
        return self.bind(call_next)(inv)

    def bind(self, call_next: Handler) -> Handler:
        services, rows, by_caller = self._stats.services, self._rows, self._by_caller
        direction, now_of, row, first = self._direction, self._clock.now, self._row, self._first

        async def count(inv: Invocation) -> Result:
            if by_caller:
                cs = services.get((direction, inv.service, inv.caller))
            else:
                cs = rows.get(inv.service)
            if cs is None:
                cs = row(inv)
                if cs is None:
                    return await first(inv, call_next)
            inv.now = start = now_of()  # the reading the filters below share
            cs.active += 1
            try:
                result = await call_next(inv)
            finally:
                cs.active -= 1
                inv.now = None  # a reading outlives neither the call nor this pass
            cs.record(result.status, (now_of() - start) * 1000, result.code)
            return result

        return count

    def _row(self, inv: Invocation) -> CallStats | None:
        """The row of a call not found at once; None for a name judged when the call ends."""
        caller = inv.caller if self._by_caller else ""
        cs = (
            None
            if self._by_caller
            else self._stats.services.get((self._direction, inv.service, ""))
        )
        if cs is None:
            if self._known is not None:
                return None
            cs = self._stats.service(self._direction, inv.service, caller)
        if not self._by_caller:
            self._remember(inv.service, cs)
        return cs

    async def _first(self, inv: Invocation, call_next: Handler) -> Result:
        """A name without a row: counted when it ends, under its own name or the unknown row.

        Not in flight meanwhile: which row holds it is not known before it ends, and a
        row made for it up front would stay, empty, for a name that turns out unknown.
        """
        inv.now = start = self._clock.now()
        try:
            result = await call_next(inv)
        finally:
            inv.now = None
        assert self._known is not None
        service = inv.service if self._known(inv.service, result) else UNKNOWN_SERVICES
        caller = inv.caller if self._by_caller else ""
        cs = self._stats.service(self._direction, service, caller)
        cs.record(result.status, (self._clock.now() - start) * 1000, result.code)
        return result

    def _remember(self, service: str, cs: CallStats) -> None:
        if len(self._rows) < self._stats.max_services:
            self._rows[service] = cs
