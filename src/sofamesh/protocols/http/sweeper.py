"""The HTTP/1.1 server's watch over its connections' timeouts, asleep while it has none.

One look every `tick` (a quarter of the shortest timeout, at most a second) ends any
read, body or send wait that outlived its deadline, so no request pays for a cancel
scope of its own. With no connection there is nothing to look at, and an idle
sidecar's three servers (inbound, outbound, admin) would otherwise wake three times
a second for nothing: the sweep waits for the first connection instead, which
`wake` announces once per accepted connection, never per request.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

import anyio


class Swept(Protocol):
    def check(self, now: float) -> None: ...


class Sweeper:
    """Runs `run` in as many tasks as the server has listeners; they share the connections."""

    __slots__ = ("_conns", "_now", "_scopes", "_tick", "_woken")

    def __init__(self, conns: Collection[Swept], tick: float, now: Callable[[], float]) -> None:
        self._conns = conns
        self._tick = tick
        self._now = now
        self._scopes: set[anyio.CancelScope] = set()
        self._woken: anyio.Event | None = None  # set while a sweep waits for a connection

    @property
    def waiting(self) -> bool:
        """Whether the sweeps are asleep for want of a connection."""
        return self._woken is not None and not self._woken.is_set()

    def wake(self) -> None:
        """A connection was accepted: a sleeping sweep starts looking again."""
        woken = self._woken
        if woken is not None:
            self._woken = None
            woken.set()

    def stop(self) -> None:
        """End every sweep now (the server is drained and holds no connection)."""
        for scope in self._scopes:
            scope.cancel()

    async def run(self, stop_if_done: Callable[[], None]) -> None:
        """Sweep until `stop`; `stop_if_done` runs once the sweep can be stopped."""
        conns, tick, now = self._conns, self._tick, self._now
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            stop_if_done()
            while True:
                if not conns:
                    if self._woken is None:
                        self._woken = anyio.Event()
                    await self._woken.wait()
                await anyio.sleep(tick)
                at = now()
                for conn in list(conns):
                    conn.check(at)
        self._scopes.discard(scope)
