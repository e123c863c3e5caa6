"""Balancers: choose one endpoint among the healthy candidates for a call.

Three policies, named as in Envoy:

- `RoundRobinBalancer`: smooth weighted round robin (nginx's algorithm): over
  any window, each endpoint is picked in proportion to its weight, and picks
  are interleaved rather than bursty.
- `RandomBalancer`: weighted random.
- `LeastRequestBalancer`: power of two choices; of two endpoints drawn at
  random (weighted), take the one with fewer requests in flight.

A balancer sees only candidates (already filtered for health, ejection and
routing) and reads in-flight counts through the `active` callable the cluster
gives it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from sofamesh.endpoint import Endpoint


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Endpoint]) -> Endpoint: ...


class RoundRobinBalancer:
    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, candidates: Sequence[Endpoint]) -> Endpoint:
        if len(candidates) == 1:
            return candidates[0]
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

    def pick(self, candidates: Sequence[Endpoint]) -> Endpoint:
        return _weighted_choice(candidates, self._rand)


class LeastRequestBalancer:
    def __init__(
        self, active: Callable[[Endpoint], int], rand: Callable[[], float] = random.random
    ):
        self._active = active
        self._rand = rand

    def pick(self, candidates: Sequence[Endpoint]) -> Endpoint:
        if len(candidates) == 1:
            return candidates[0]
        a = _weighted_choice(candidates, self._rand)
        b = _weighted_choice(candidates, self._rand)
        # Compare load per unit of weight, so a heavier endpoint is allowed more in flight.
        return a if self._active(a) * b.weight <= self._active(b) * a.weight else b


BALANCERS = ("round_robin", "random", "least_request")


def make_balancer(name: str, active: Callable[[Endpoint], int]) -> Balancer:
    if name == "round_robin":
        return RoundRobinBalancer()
    if name == "random":
        return RandomBalancer()
    if name == "least_request":
        return LeastRequestBalancer(active)
    raise ValueError(f"unknown balancer {name!r} (expected one of {', '.join(BALANCERS)})")
