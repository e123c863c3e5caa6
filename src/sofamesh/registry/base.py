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
- `unpublish` (and closing the registry, which unpublishes what it published)
  leaves a withdrawal mark for about a lease, and snapshots carry the marks
  (`Snapshot.withdrawn`): a consumer can tell an owner's removal, which it
  believes at once, from an entry that vanished (an expired lease, a deleted
  file), which it may hold for a lease (upstream/removals.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol, TypeVar

import anyio

from sofamesh.endpoint import Endpoint

T = TypeVar("T")

DEFAULT_LEASE = 10.0  # seconds; what a snapshot says when its registry has no lease of its own


class Snapshot(frozenset[Endpoint]):
    """A service's endpoints as the registry lists them, and what it knows of removals.

    - `withdrawn`: the keys (`Endpoint.key`) whose owners unpublished them within about
      a lease: their absence is deliberate. A key may be both listed and withdrawn
      while an owner publishes again; listing wins.
    - `lease`: seconds within which a live owner renews its entries, so how long an
      entry that vanished without a withdrawal may be a glitch rather than a death.

    Equality and hashing are the endpoint set's: two snapshots listing the same
    endpoints are the same state, whatever marks they carry.
    """

    __slots__ = ("lease", "withdrawn")
    withdrawn: frozenset[str]
    lease: float

    def __new__(
        cls,
        endpoints: Iterable[Endpoint] = (),
        *,
        withdrawn: Iterable[str] = (),
        lease: float = DEFAULT_LEASE,
    ) -> Snapshot:
        self = super().__new__(cls, endpoints)
        self.withdrawn = frozenset(withdrawn)
        self.lease = lease
        return self

    def __repr__(self) -> str:
        listed = ", ".join(sorted(e.key for e in self))
        return f"Snapshot({{{listed}}}, withdrawn={sorted(self.withdrawn)}, lease={self.lease:g})"


class Registry(Protocol):
    """Service discovery: what publishers announce and watchers follow."""

    async def publish(self, endpoint: Endpoint) -> None:
        """Announce `endpoint` under its service, with a lease kept alive by the backend."""
        ...

    async def unpublish(self, endpoint: Endpoint) -> None:
        """Withdraw `endpoint`; watchers see it gone promptly, with a withdrawal mark."""
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


class Shared:
    """One service's last snapshot, shared by all its watchers (a registry's one follower
    feeds it), and how they learn of a new one."""

    __slots__ = ("changed", "snapshot", "watchers")

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.changed = anyio.Event()
        self.watchers = 0

    def publish(self, snap: Snapshot) -> None:
        if snap == self.snapshot and self.snapshot is not None:
            return
        self.snapshot = snap
        changed, self.changed = self.changed, anyio.Event()
        changed.set()


async def follow_shared(
    watched: dict[str, Shared], service: str, shared: Shared
) -> AsyncGenerator[Snapshot, None]:
    """A watcher's snapshots from `shared`, registered in `watched` while it runs: each
    one different from the last, the first as soon as there is one."""
    shared.watchers += 1
    try:
        last: Snapshot | None = None
        while True:
            snap = shared.snapshot
            if snap is not None and snap != last:
                last = snap
                yield snap
                continue
            await shared.changed.wait()
    finally:
        shared.watchers -= 1
        if not shared.watchers and watched.get(service) is shared:
            del watched[service]


class RegistryError(Exception):
    """The registry could not be reached or answered nonsense; last known state stays in force."""
