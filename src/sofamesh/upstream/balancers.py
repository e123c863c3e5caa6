"""Balancers: choose one endpoint among the healthy candidates for a call.

One table (`FACTORIES`) names every balancer, for `policy.balancer` and for
governance's `load_balancing` rules alike. The policies, named as in Envoy:

- `RoundRobinBalancer`: smooth weighted round robin (nginx's algorithm): over
  any window, each endpoint is picked in proportion to its weight, and picks
  are interleaved rather than bursty.
- `RandomBalancer`: weighted random.
- `LeastRequestBalancer`: power of two choices; of two endpoints drawn at
  random (weighted), take the one with fewer requests in flight.
- `HashBalancer` (`ring_hash`, `maglev`): consistent hashing of a request key
  (`hashing.py`), so the same key keeps going to the same endpoint.

A balancer sees only candidates (already filtered for health, ejection and
routing) and reads in-flight counts through the `active` callable the cluster
gives it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation
from sofamesh.upstream.settings import BALANCERS as BALANCERS  # the config holds the names

if TYPE_CHECKING:
    from sofamesh.upstream.hashing import MaglevConfig, RingHashConfig

# The header a `ring_hash` / `maglev` policy hashes when no rule names one.
DEFAULT_HASH_HEADER = "x-sofamesh-hash-key"
TABLES_KEPT = 8  # hash tables kept per balancer: the live membership and a few retry subsets


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Endpoint], inv: Invocation | None = None) -> Endpoint: ...


class HashTable(Protocol):
    def pick(self, key: str | int) -> Endpoint | None: ...


HashTableFactory = Callable[[Sequence[Endpoint]], HashTable]


class RoundRobinBalancer:
    """Smooth weighted round robin, by index while one list of equal weights repeats.

    The smooth algorithm keeps a current weight per endpoint key and walks every
    candidate on every pick. Over equal weights `w` and `n` candidates it cycles in
    list order from all-zero weights, and after `k` picks of a cycle the weights are
    ``(k - n) * w`` for the first `k` and ``k * w`` for the rest. So when a pick leaves
    that state after one step (k = 1) and the next call brings the same list object
    (a cluster's or a subset's rotation, kept until membership changes), the turn is
    just the next index; the weights are written back, from `k`, when another list
    comes. The picks are the smooth algorithm's exactly, without its walk.
    """

    __slots__ = ("_current", "_list", "_next", "_weight")

    def __init__(self) -> None:
        self._current: dict[str, int] = {}
        self._list: Sequence[Endpoint] | None = None  # the list picked by index, if any
        self._next = 0  # its next turn: `k`, the picks of this cycle so far
        self._weight = 0  # the weight each of its endpoints has

    def pick(self, candidates: Sequence[Endpoint], inv: Invocation | None = None) -> Endpoint:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        if candidates is self._list:
            k = self._next
            self._next = k + 1 if k + 1 < n else 0
            return candidates[k]
        if self._list is not None:
            self._write_back()
        best = self._smooth(candidates)
        self._by_index_from_here(candidates)
        return best

    def _smooth(self, candidates: Sequence[Endpoint]) -> Endpoint:
        total = 0
        best: Endpoint | None = None
        best_weight = 0
        cur = self._current
        for ep in candidates:
            w = ep.weight or 1
            c = cur.get(ep.key, 0) + w
            cur[ep.key] = c
            total += w
            if best is None or c > best_weight:
                best, best_weight = ep, c
        assert best is not None
        cur[best.key] = best_weight - total
        if len(cur) > 4 * len(candidates):  # forget endpoints long gone
            keep = {ep.key for ep in candidates}
            self._current = {k: v for k, v in cur.items() if k in keep}
        return best

    def _by_index_from_here(self, candidates: Sequence[Endpoint]) -> None:
        """Take the next picks by index if the smooth pick just made left the first step
        of an equal-weight cycle (the first endpoint picked from all-zero weights)."""
        w = candidates[0].weight or 1
        n = len(candidates)
        cur = self._current
        if cur.get(candidates[0].key) != (1 - n) * w:
            return
        for ep in candidates[1:]:
            if (ep.weight or 1) != w or cur.get(ep.key) != w:
                return
        self._list, self._next, self._weight = candidates, 1, w

    def _write_back(self) -> None:
        """The weights the smooth algorithm would hold after `k` picks of the cycle."""
        candidates, k, w = self._list, self._next, self._weight
        assert candidates is not None
        n = len(candidates)
        cur = self._current
        for j, ep in enumerate(candidates):
            cur[ep.key] = (k - n) * w if j < k else k * w
        self._list = None


def _weighted_choice(candidates: Sequence[Endpoint], rand: Callable[[], float]) -> Endpoint:
    total = sum(ep.weight for ep in candidates)
    if total <= 0:
        return candidates[int(rand() * len(candidates)) % len(candidates)]
    point = rand() * total
    for ep in candidates:
        point -= ep.weight
        if point < 0:
            return ep
    return candidates[-1]


class RandomBalancer:
    def __init__(self, rand: Callable[[], float] = random.random) -> None:
        self._rand = rand

    def pick(self, candidates: Sequence[Endpoint], inv: Invocation | None = None) -> Endpoint:
        return _weighted_choice(candidates, self._rand)


class LeastRequestBalancer:
    def __init__(
        self, active: Callable[[Endpoint], int], rand: Callable[[], float] = random.random
    ):
        self._active = active
        self._rand = rand

    def pick(self, candidates: Sequence[Endpoint], inv: Invocation | None = None) -> Endpoint:
        if len(candidates) == 1:
            return candidates[0]
        a = _weighted_choice(candidates, self._rand)
        b = _weighted_choice(candidates, self._rand)
        # Compare load per unit of weight, so a heavier endpoint is allowed more in flight.
        return a if self._active(a) * b.weight <= self._active(b) * a.weight else b


class HashBalancer:
    """Consistent hashing as a cluster's balancer (`ring_hash`, `maglev`).

    The key is a request header: a `load_balancing` rule's `hash.header` when
    one applies to the service (the rule's `BalancingLeaf` then hashes with its
    own table settings), else `DEFAULT_HASH_HEADER`. A call without the key
    gets a weighted random pick, as in Envoy when no hash policy yields a key.
    Tables are built per candidate set (a retry excludes the endpoints tried,
    which rehashes over the rest) and a few are kept.
    """

    def __init__(
        self,
        table: HashTableFactory,
        header: str = DEFAULT_HASH_HEADER,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._make = table
        self._header = header
        self._rand = rand
        self._tables: dict[tuple[tuple[str, int], ...], HashTable] = {}
        self.table_builds = 0

    def pick(self, candidates: Sequence[Endpoint], inv: Invocation | None = None) -> Endpoint:
        key = inv.headers.get(self._header) if inv is not None else None
        ep = self.pick_key(candidates, key) if key is not None else None
        return ep if ep is not None else _weighted_choice(candidates, self._rand)

    def pick_key(self, candidates: Sequence[Endpoint], key: str) -> Endpoint | None:
        """The endpoint `key` hashes to among `candidates` (None if none has weight)."""
        return self.table(candidates).pick(key)

    def table(self, candidates: Sequence[Endpoint]) -> HashTable:
        sig = tuple((e.key, e.weight) for e in candidates)
        table = self._tables.get(sig)
        if table is None:
            if len(self._tables) >= TABLES_KEPT:  # membership moved on: drop the oldest
                del self._tables[next(iter(self._tables))]
            # Built on the request path when membership changes; see docs for the cost.
            table = self._tables[sig] = self._make(candidates)
            self.table_builds += 1
        return table


@attrs.frozen
class BalancerSpec:
    """What a factory may use: in-flight counts, randomness, a hash balancer's table settings."""

    active: Callable[[Endpoint], int] = lambda _ep: 0
    rand: Callable[[], float] = random.random
    hash_config: RingHashConfig | MaglevConfig | None = None


BalancerFactory = Callable[[BalancerSpec], Balancer]


# The hash tables' module loads with the first hashing balancer: an idle sidecar
# that balances otherwise never runs it.
def _ring(spec: BalancerSpec) -> HashBalancer:
    from sofamesh.upstream.hashing import RingHash, RingHashConfig

    cfg = spec.hash_config if isinstance(spec.hash_config, RingHashConfig) else None
    return HashBalancer(lambda eps: RingHash(eps, cfg), rand=spec.rand)


def _maglev(spec: BalancerSpec) -> HashBalancer:
    from sofamesh.upstream.hashing import Maglev, MaglevConfig

    cfg = spec.hash_config if isinstance(spec.hash_config, MaglevConfig) else None
    return HashBalancer(lambda eps: Maglev(eps, cfg), rand=spec.rand)


# The one table of balancers, by the name `policy.balancer` and `load_balancing`
# rules use. A new balancer is a class with `pick` and a line here.
FACTORIES: dict[str, BalancerFactory] = {
    "round_robin": lambda spec: RoundRobinBalancer(),
    "random": lambda spec: RandomBalancer(spec.rand),
    "weighted_random": lambda spec: RandomBalancer(spec.rand),
    "least_request": lambda spec: LeastRequestBalancer(spec.active, spec.rand),
    "ring_hash": _ring,
    "maglev": _maglev,
}


def make_balancer(name: str, spec: BalancerSpec | None = None) -> Balancer:
    factory = FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown balancer {name!r} (expected one of {', '.join(BALANCERS)})")
    return factory(spec or BalancerSpec())


def make_hash_balancer(name: str, spec: BalancerSpec | None = None) -> HashBalancer:
    """A hashing balancer by name (`ring_hash`, `maglev`): what a `load_balancing` rule uses."""
    balancer = make_balancer(name, spec)
    if not isinstance(balancer, HashBalancer):
        raise ValueError(f"balancer {name!r} does not hash")
    return balancer
