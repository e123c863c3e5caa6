"""The `Registry` capability: publish endpoints with a lease, watch a service.

Every backend (memory, file, etcd, ZooKeeper) implements this one protocol.
A backend is an async context manager that owns its background work (lease
renewal, polling, watch streams); nothing it starts outlives its `async with`.

Semantics every backend keeps:
- `publish` returns once the endpoint is visible to new watchers; the backend
  renews the lease until `unpublish` or close. If the owning process dies, the
  entry disappears within the lease (or session) timeout.
- `watch(service)` yields full snapshots (a frozenset of endpoints), the first
  one immediately, then one per change. Snapshots are whole sets, never deltas,
  so a consumer that misses an intermediate state still converges.
- A registry *error* never produces an empty snapshot: only an explicit removal
  does. Consumers keep routing on what they last knew.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol, TypeVar

from sofamesh.endpoint import Endpoint

Snapshot = frozenset[Endpoint]
T = TypeVar("T")


class Registry(Protocol):
    """Service discovery: what publishers announce and watchers follow."""

    async def publish(self, endpoint: Endpoint) -> None:
        """Announce `endpoint` under its service, with a lease kept alive by the backend."""
        ...

    async def unpublish(self, endpoint: Endpoint) -> None:
        """Withdraw `endpoint`; watchers see it gone promptly."""
        ...

    def watch(self, service: str) -> AbstractAsyncContextManager[AsyncIterator[Snapshot]]:
        """Follow the endpoint set of `service`: `async with reg.watch(s) as snaps:`."""
        ...

    async def list_services(self) -> list[str]:
        """Every service with at least one live endpoint (for catalogs and admin)."""
        ...


class OpenedRegistry(Registry, AbstractAsyncContextManager["OpenedRegistry"], Protocol):
    """A registry as `open_registry` gives it: `async with` owns its background work."""


@asynccontextmanager
async def watching(follower: AsyncGenerator[T, None]) -> AsyncIterator[AsyncIterator[T]]:
    """Every backend's `watch`: lend `follower` (a generator of snapshots or documents) to
    the block, and finalise it when the block ends, in this task rather than in the GC
    (whose finaliser would run the generator's cleanup outside any cancel scope)."""
    try:
        yield follower
    finally:
        await follower.aclose()


class RegistryError(Exception):
    """The registry could not be reached or answered nonsense; last known state stays in force."""
