"""Consistent hashing over weighted endpoints: Envoy's ring hash and Maglev balancers.

Both map a request key (a header, a user id...) to an endpoint so that the same
key keeps going to the same endpoint, and a change of membership moves only a
small share of keys. Each is built once per membership change (a pure function
of the endpoints and the config) and then answers `pick(key)` cheaply.

Ring hash (Envoy ``RING_HASH``, after Karger et al.): every endpoint is hashed
onto a 64-bit ring many times (``address_0``, ``address_1``, ...), as many as
its share of the ring: weights are normalised to sum to 1, the ring gets
``scale = min(ceil(min_w * min_ring_size) / min_w, max_ring_size)`` entries in
all, and endpoint i gets ``scale * w_i`` of them (fractions carried from one
endpoint to the next, as in Envoy). A key goes to the first entry at or after
its hash, wrapping around. Only the keys on a leaving endpoint's entries move,
plus the few that renormalised entry counts shift.

Maglev (Envoy ``MAGLEV``, after Eisenbud et al., NSDI 2016): a lookup table of
prime size M. Each endpoint has a permutation of the slots
(``offset + j * skip mod M``, both from its address hash) and the endpoints
take turns claiming their next free slot; a weighted endpoint takes a turn
only every ``max_w / w`` rounds (Envoy's ``target_weight`` rule). A key goes to
``table[hash % M]``. Lookup is O(1); a leaving endpoint moves little more than
its own share of keys.

Hashes are the first 8 bytes of BLAKE2b (Envoy uses xxHash64): stable across
processes and Python versions, unlike `hash()`. Endpoints are taken in address
order, so the result does not depend on the order discovery lists them in;
endpoints of weight 0 get no traffic.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import attrs

from sofamesh.endpoint import Endpoint


def hash64(text: str, seed: int = 0) -> int:
    """A stable 64-bit hash of `text`; different seeds give independent hashes."""
    import hashlib  # on first use: it loads OpenSSL's digests (0.7 MB an idle sidecar lacks)

    digest = hashlib.blake2b(text.encode(), digest_size=8, salt=seed.to_bytes(16, "little"))
    return int.from_bytes(digest.digest(), "little")


def _is_prime(n: int) -> bool:
    if n < 2 or n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def _prime(_inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    if not _is_prime(value):
        raise ValueError(f"{attr.name} must be a prime number, got {value}")


def _normalised(endpoints: Sequence[Endpoint]) -> list[tuple[Endpoint, float]]:
    live = sorted((e for e in endpoints if e.weight > 0), key=lambda e: (e.address, e.key))
    total = sum(e.weight for e in live)
    return [(e, e.weight / total) for e in live]


@attrs.frozen(kw_only=True)
class RingHashConfig:
    """Envoy's ``RingHashLbConfig``; `max_ring_size` is lower than Envoy's 8M by default
    (each entry is a Python int and a reference, about 100 bytes)."""

    min_ring_size: int = attrs.field(default=1024, validator=attrs.validators.ge(1))
    max_ring_size: int = attrs.field(default=1 << 20, validator=attrs.validators.ge(1))

    def __attrs_post_init__(self) -> None:
        if self.max_ring_size < self.min_ring_size:
            raise ValueError("max_ring_size must be >= min_ring_size")


class RingHash:
    """A ketama-style ring built from one membership."""

    __slots__ = ("_endpoints", "_hashes")

    def __init__(self, endpoints: Sequence[Endpoint], config: RingHashConfig | None = None) -> None:
        config = config or RingHashConfig()
        weights = _normalised(endpoints)
        entries: list[tuple[int, Endpoint]] = []
        if weights:
            min_w = min(w for _, w in weights)
            scale = min(math.ceil(min_w * config.min_ring_size) / min_w, config.max_ring_size)
            current, target = 0.0, 0.0
            for endpoint, w in weights:
                target += scale * w
                i = 0
                while current < target:
                    entries.append((hash64(f"{endpoint.address}_{i}"), endpoint))
                    i += 1
                    current += 1
        entries.sort(key=lambda entry: entry[0])
        self._hashes = [h for h, _ in entries]
        self._endpoints = [e for _, e in entries]

    def __len__(self) -> int:
        return len(self._hashes)

    def pick(self, key: str | int) -> Endpoint | None:
        """The endpoint for `key` (a string, or a precomputed 64-bit hash); None if empty."""
        if not self._hashes:
            return None
        h = key if isinstance(key, int) else hash64(key)
        i = bisect.bisect_left(self._hashes, h)
        return self._endpoints[i if i < len(self._hashes) else 0]


@attrs.frozen(kw_only=True)
class MaglevConfig:
    """Envoy's ``MaglevLbConfig``: the table size must be prime (default 65537)."""

    table_size: int = attrs.field(default=65537, validator=_prime)


class Maglev:
    """A Maglev lookup table built from one membership.

    Building costs about ``M ln M`` probe steps (about 65 ms for the default
    65537 slots in CPython), so build it when membership changes, off the
    request path (a worker thread), and swap it in.
    """

    __slots__ = ("_size", "_table")

    def __init__(self, endpoints: Sequence[Endpoint], config: MaglevConfig | None = None) -> None:
        size = (config or MaglevConfig()).table_size
        self._size = size
        self._table: list[Endpoint] = []
        weights = _normalised(endpoints)
        if weights:
            self._table = self._build(weights, size)

    @staticmethod
    def _build(weights: list[tuple[Endpoint, float]], size: int) -> list[Endpoint]:
        n = len(weights)
        offset = [hash64(e.address, 0) % size for e, _ in weights]
        skip = [hash64(e.address, 1) % (size - 1) + 1 for e, _ in weights]
        step = [0] * n  # each endpoint's position in its own permutation
        target = [0.0] * n
        max_w = max(w for _, w in weights)
        table: list[Endpoint | None] = [None] * size
        filled, iteration = 0, 0
        while filled < size:
            iteration += 1
            for i in range(n):
                if filled >= size:
                    break
                if iteration * weights[i][1] < target[i]:
                    continue  # a lighter endpoint sits this round out
                target[i] += max_w
                slot = (offset[i] + skip[i] * step[i]) % size
                while table[slot] is not None:
                    step[i] += 1
                    slot = (offset[i] + skip[i] * step[i]) % size
                table[slot] = weights[i][0]
                step[i] += 1
                filled += 1
        return [e for e in table if e is not None]

    def pick(self, key: str | int) -> Endpoint | None:
        if not self._table:
            return None
        h = key if isinstance(key, int) else hash64(key)
        return self._table[h % self._size]

    def shares(self) -> dict[Endpoint, float]:
        """Each endpoint's share of the table (for /clusters and tests)."""
        counts: dict[Endpoint, int] = {}
        for e in self._table:
            counts[e] = counts.get(e, 0) + 1
        return {e: c / self._size for e, c in counts.items()}
