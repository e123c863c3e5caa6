"""Connection fairness: one source cannot fill a listener, and idle connections go first.

Two defences, both at accept time, so the request path pays nothing:

- **per source**: a listener holds at most `max_per_source` connections from one client
  address (by IP, whatever the port); past it a new connection from that address is
  closed on accept. One client opening thousands of idle connections fills its own share,
  not the listener, so other clients keep being served.
  A source at its share gets its own longest-idle connection that never carried a request
  closed to make room instead, so connections opened and left idle (an idle-connection
  flood from behind a NAT its real clients share) do not lock the source's new ones out.
  Keep-alive connections that carried requests are not replaced: the client may be about
  to reuse them.
- **idle budget**: once a listener holds `evict_at` connections (a share of
  `max_connections`), each new connection closes a batch of *idle* ones first: those that
  have not sent a complete request yet, or that wait between requests, the longest waiting
  first. Only when no idle connection is left is a new connection refused. A connection
  offers itself through `Evictable`; one that does not (or is busy) is never evicted.

Envoy's nearest equivalents are the overload manager's `reduce_timeouts` and
`stop_accepting_connections` actions and per-client connection limits of its
`connection_limit` filter; nginx has `limit_conn` per address.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, runtime_checkable

import anyio.abc

from sofamesh.transport.budget import OVERLOAD

log = logging.getLogger("sofamesh.transport")

PER_SOURCE_SHARE = 10  # default max_per_source: a tenth of max_connections
EVICT_SHARE = 0.9  # default: the idle budget starts at 90 % of max_connections
EVICT_BATCH_SHARE = 100  # idle connections closed per pass: 1 % of max_connections
PRUNE_EVICTING = 1024  # evicted connections remembered before they are looked for in the open


@runtime_checkable
class Evictable(Protocol):
    """A server connection the idle budget may close."""

    def idle_rank(self) -> float | None:
        """When its current idle wait began (smaller goes first); None while it is busy."""

    def evict(self) -> str:
        """Close it now, as an idle connection; returns its peer, for the log."""


def source_of(stream: anyio.abc.ByteStream) -> str:
    """The client's address without its port ("" when the stream has none)."""
    address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    if isinstance(address, tuple) and address:
        return str(address[0])
    return ""


def default_per_source(max_connections: int) -> int:
    return max(1, max_connections // PER_SOURCE_SHARE)


class Admission:
    """The per-source counts and the idle budget of one server's listeners."""

    def __init__(
        self,
        protocol: str,
        max_connections: int,
        max_per_source: int = 0,
        evict_share: float = EVICT_SHARE,
    ) -> None:
        self.protocol = protocol
        self.max_per_source = max_per_source or default_per_source(max_connections)
        self.evict_at = max(1, math.ceil(max_connections * evict_share))
        self.batch = max(1, max_connections // EVICT_BATCH_SHARE)
        self.sources: dict[str, int] = {}
        self.refused_per_source = 0
        self.evicted = 0
        self._warned: set[str] = set()  # sources over their limit, logged once until under it
        self._evicting: set[Any] = set()  # closed by the idle budget, not yet gone
        self._prune_at = PRUNE_EVICTING
        # Per source at its share: its never-used idle connections, oldest first, as last
        # found; each is checked again when its turn comes. A flood of thousands from one
        # address then costs one scan of the connections per batch, not one per accept.
        self._spare: dict[str, deque[Any]] = {}

    def enter(self, source: str, conns: Collection[Any] = ()) -> bool:
        """Count a connection from `source` in; False (and a log line, once) when over its share
        and none of its connections in `conns` is idle to make room."""
        n = self.sources.get(source, 0)
        if n >= self.max_per_source:
            if self.make_room_for(source, conns):
                return True
            self.refused_per_source += 1
            OVERLOAD.count("connections_refused_per_source")
            if source not in self._warned:
                self._warned.add(source)
                log.warning(
                    "%s: refusing connections from %s: %d open (max_connections_per_source)",
                    self.protocol,
                    source,
                    n,
                )
            return False
        self.sources[source] = n + 1
        return True

    def make_room_for(self, source: str, conns: Collection[Any]) -> bool:
        """Close the longest-idle never-used connection of `source`; count the new one instead.

        The closed connection leaves the count when its task ends, so the source may hold
        one more than its share for that moment. False when none of its connections is idle
        and unused.
        """
        conn = self._oldest_spare(source, conns)
        if conn is None:
            return False
        self._evicting.add(conn)
        conn.evict()
        if source not in self._warned:  # logged once until the source is under its share
            self._warned.add(source)
            log.warning(
                "%s: %s is at its share of connections (max_connections_per_source): "
                "its longest idle ones are closed to make room for its new ones",
                self.protocol,
                source,
            )
        self.evicted += 1
        OVERLOAD.count("connections_evicted_idle")
        self.sources[source] = self.sources.get(source, 0) + 1
        return True

    def _oldest_spare(self, source: str, conns: Collection[Any]) -> Any | None:
        """The oldest never-used idle connection of `source` in `conns`, or None."""
        queue = self._spare.get(source)
        for scanned in (False, True):
            while queue:
                conn = queue.popleft()
                if conn in conns and self._spare_now(conn):
                    return conn
            if scanned:
                break
            queue = self._spare[source] = self._scan(source, conns)
        del self._spare[source]
        return None

    def _spare_now(self, conn: Any) -> bool:
        return conn not in self._evicting and _never_used(conn) and conn.idle_rank() is not None

    def _scan(self, source: str, conns: Iterable[Any]) -> deque[Any]:
        mine = [
            (rank, conn)
            for rank, conn in _idle(c for c in conns if c not in self._evicting)
            if _source(conn) == source and _never_used(conn)
        ]
        mine.sort(key=lambda pair: pair[0])
        return deque(conn for _rank, conn in mine)

    def leave(self, source: str) -> None:
        n = self.sources[source] - 1
        if n:
            self.sources[source] = n
        else:
            del self.sources[source]
            self._spare.pop(source, None)
        if n < self.max_per_source:
            self._warned.discard(source)

    def open_count(self, conns: set[Any]) -> int:
        """Connections open and not already on their way out by the idle budget.

        Below `evict_at` the exact figure decides nothing (`len(conns)` is under every
        limit), so the set of evicted connections is pruned only near the limit or when it
        has grown: during a flood, pruning on every accept was an eighth of its cost.
        """
        if len(conns) < self.evict_at and len(self._evicting) < self._prune_at:
            return len(conns)
        self._evicting &= conns
        self._prune_at = max(PRUNE_EVICTING, 2 * len(self._evicting))
        return len(conns) - len(self._evicting)

    def make_room(self, conns: set[Any], open_now: int) -> int:
        """Past `evict_at`, close a batch of the longest-idle connections; returns how many."""
        if open_now < self.evict_at:
            return 0
        want = max(self.batch, open_now - self.evict_at + 1)
        chosen = heapq.nsmallest(want, _idle(conns), key=lambda pair: pair[0])
        peers = [conn.evict() for _rank, conn in chosen]
        self._evicting.update(conn for _rank, conn in chosen)
        if peers:
            self.evicted += len(peers)
            OVERLOAD.count("connections_evicted_idle", len(peers))
            log.warning(
                "%s: %d connections open, closed %d idle ones (the longest idle from %s)",
                self.protocol,
                open_now,
                len(peers),
                peers[0],
            )
        return len(peers)


def _source(conn: Any) -> str:
    """A server connection's client address without its port, from its `info.peer`."""
    info = getattr(conn, "info", None)
    peer = getattr(info, "peer", "")
    host = str(peer).rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def _never_used(conn: Any) -> bool:
    """No request came on it yet (HTTP/1.1 `served`, Bolt `used`); unknown kinds count as used."""
    served = getattr(conn, "served", None)
    if served is not None:
        return bool(served == 0)
    return getattr(conn, "used", True) is False


def _idle(conns: Iterable[Any]) -> Iterable[tuple[float, Evictable]]:
    for conn in conns:
        rank: Callable[[], float | None] | None = getattr(conn, "idle_rank", None)
        if rank is None:
            continue
        r = rank()
        if r is not None:
            yield r, conn
