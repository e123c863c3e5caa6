"""Registry removals, believed carefully: a pure state machine that takes `now`.

A registry snapshot that drops endpoints may be the truth (their owners
unpublished them, or died) or a glitch (a lease that lapsed during a pause, a
deleted file, an operator's slip, an attacker with write access to the
registry). Believing an empty snapshot at once turns any such glitch into an
outage; Envoy and Istio keep a cluster's last known endpoints for the same
reason. The rules, for each snapshot:

- An endpoint whose owner withdrew it (`Snapshot.withdrawn`) goes at once.
- The endpoints the snapshot no longer lists without a withdrawal are *gone*
  (together with any still held). If they are at least `hold_removal_share` of
  the endpoints in force (owners' withdrawals left out), the newly gone ones are
  *held*: still routed to, until one lease after the snapshot that dropped them.
  Below the share they go at once.
- A held endpoint that the registry lists again is no longer held; one that
  reaches its deadline goes (`release`). A hold never restarts: a registry that
  keeps flapping cannot keep a dead endpoint alive beyond one lease.

With the default share, 1.0, only a snapshot that would empty the cluster is
held: the removals of ordinary rolling restarts take effect at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

import attrs

from sofamesh.endpoint import Endpoint
from sofamesh.upstream.settings import RemovalConfig as RemovalConfig


@attrs.frozen
class Held:
    """An endpoint the registry stopped listing, still in force until `until`."""

    endpoint: Endpoint
    since: float
    until: float


@attrs.frozen
class Change:
    """What one snapshot did: endpoints newly held, back from a hold, or gone at once."""

    held: tuple[Endpoint, ...] = ()
    restored: tuple[Endpoint, ...] = ()
    removed: tuple[Endpoint, ...] = ()
    withdrawn: tuple[Endpoint, ...] = ()


@attrs.frozen
class RemovalStatistics:
    holding: int  # endpoints held right now
    holds: int  # snapshots whose removals were held
    released: int  # held endpoints that went after their hold
    restored: int  # held endpoints listed again before their hold ended


NO_CHANGE = Change()


class RemovalGuard:
    """The endpoints in force for one cluster: the registry's listing plus held removals."""

    def __init__(self, config: RemovalConfig | None = None) -> None:
        self.config = config or RemovalConfig()
        self.listed: dict[str, Endpoint] = {}  # the last snapshot, by key
        self.held: dict[str, Held] = {}
        self._holds = self._released = self._restored = 0

    def in_force(self) -> list[Endpoint]:
        """What the cluster routes to: every listed endpoint and every held one."""
        if not self.held:
            return list(self.listed.values())
        return [*self.listed.values(), *(h.endpoint for h in self.held.values())]

    @property
    def next_release(self) -> float | None:
        """When the earliest hold ends (None: nothing is held)."""
        return min((h.until for h in self.held.values()), default=None)

    def offer(
        self, snapshot: Iterable[Endpoint], withdrawn: Set[str], hold: float, now: float
    ) -> Change:
        """Take a snapshot in; what changed about holds and removals."""
        listed = {e.key: e for e in snapshot}
        before, self.listed = self.listed, listed
        if not self.held and listed.keys() >= before.keys():
            return NO_CHANGE  # nothing removed: the usual snapshot costs one comparison
        restored = tuple(self.held.pop(k).endpoint for k in list(self.held) if k in listed)
        by_owner = tuple(self.held.pop(k).endpoint for k in list(self.held) if k in withdrawn)
        by_owner += tuple(e for k, e in before.items() if k not in listed and k in withdrawn)
        newly = [e for k, e in before.items() if k not in listed and k not in withdrawn]
        self._restored += len(restored)
        if newly and self._too_many(len(newly) + len(self.held), len(listed)):
            for e in newly:
                self.held[e.key] = Held(e, now, now + hold)
            self._holds += 1
            return Change(held=tuple(newly), restored=restored, withdrawn=by_owner)
        return Change(restored=restored, removed=tuple(newly), withdrawn=by_owner)

    def _too_many(self, gone: int, staying: int) -> bool:
        return gone >= self.config.hold_removal_share * (gone + staying)

    def release(self, now: float) -> tuple[Held, ...]:
        """End the holds due by `now`; the endpoints that go."""
        due = tuple(h for h in self.held.values() if h.until <= now)
        for h in due:
            del self.held[h.endpoint.key]
        self._released += len(due)
        return due

    def statistics(self) -> RemovalStatistics:
        return RemovalStatistics(len(self.held), self._holds, self._released, self._restored)
