"""`memory://`: one process, no persistence; for tests and single-process apps.

An endpoint leaves the hub only when its owner unpublishes it (or closes its
registry), so every removal here is a withdrawal: the hub keeps its mark for
`WITHDRAWN_FOR` seconds, so a watcher that wakes after several changes still
sees why the endpoint went.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import anyio

from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import DEFAULT_LEASE, Snapshot, watching

WITHDRAWN_FOR = DEFAULT_LEASE  # seconds a withdrawal mark lives (the implicit lease)


class MemoryHub:
    """The shared state behind every `MemoryRegistry` opened on the same hub."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Endpoint]] = {}
        self.withdrawn: dict[str, dict[str, float]] = {}  # service -> key -> mark ends (monotonic)
        self.version = 0
        # One event per waiting watcher, made in the watcher's own event loop, so a
        # hub outlives any one backend (tests run asyncio and trio in turn).
        self.waiters: set[anyio.Event] = set()

    def bump(self) -> None:
        self.version += 1
        waiters, self.waiters = self.waiters, set()
        for ev in waiters:
            ev.set()

    def snapshot(self, service: str) -> Snapshot:
        marks = self.withdrawn.get(service, {})
        if marks:
            now = time.monotonic()
            for key in [k for k, until in marks.items() if until <= now]:
                del marks[key]
        return Snapshot(
            self.services.get(service, {}).values(), withdrawn=marks, lease=WITHDRAWN_FOR
        )


_DEFAULT_HUB: MemoryHub | None = None


def default_hub() -> MemoryHub:
    """The process-wide hub that `memory://` URLs share."""
    global _DEFAULT_HUB
    if _DEFAULT_HUB is None:
        _DEFAULT_HUB = MemoryHub()
    return _DEFAULT_HUB


class MemoryRegistry:
    """A `Registry` over an in-process hub; leases are implicit (the process is the owner)."""

    def __init__(self, hub: MemoryHub | None = None) -> None:
        self._hub = hub if hub is not None else default_hub()
        self._mine: set[Endpoint] = set()

    async def __aenter__(self) -> MemoryRegistry:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for ep in list(self._mine):
            self._remove(ep)

    async def publish(self, endpoint: Endpoint) -> None:
        self._hub.services.setdefault(endpoint.service, {})[endpoint.key] = endpoint
        self._hub.withdrawn.get(endpoint.service, {}).pop(endpoint.key, None)
        self._mine.add(endpoint)
        self._hub.bump()

    async def unpublish(self, endpoint: Endpoint) -> None:
        self._remove(endpoint)

    def _remove(self, endpoint: Endpoint) -> None:
        self._mine.discard(endpoint)
        eps = self._hub.services.get(endpoint.service, {})
        if eps.pop(endpoint.key, None) is not None:
            marks = self._hub.withdrawn.setdefault(endpoint.service, {})
            marks[endpoint.key] = time.monotonic() + WITHDRAWN_FOR
            if not eps:
                del self._hub.services[endpoint.service]
            self._hub.bump()

    def watch(self, service: str) -> AbstractAsyncContextManager[AsyncIterator[Snapshot]]:
        return watching(self._follow(service))

    async def _follow(self, service: str) -> AsyncGenerator[Snapshot, None]:
        last: Snapshot | None = None
        while True:
            changed = anyio.Event()
            self._hub.waiters.add(changed)
            snap = self._hub.snapshot(service)
            if snap != last:
                last = snap
                yield snap
            try:
                await changed.wait()
            finally:
                self._hub.waiters.discard(changed)

    async def list_services(self) -> list[str]:
        return sorted(self._hub.services)
