from __future__ import annotations

import random
from collections import Counter

from sofamesh.endpoint import Endpoint
from sofamesh.upstream.balancers import LeastRequestBalancer, RandomBalancer, RoundRobinBalancer


def eps(*weights: int) -> list[Endpoint]:
    return [Endpoint("svc", "127.0.0.1", 1000 + i, weight=w) for i, w in enumerate(weights)]


def test_smooth_round_robin_follows_weights_and_interleaves() -> None:
    a, b, c = eps(5, 1, 1)
    rr = RoundRobinBalancer()
    picks = [rr.pick([a, b, c]) for _ in range(7)]
    assert Counter(picks) == {a: 5, b: 1, c: 1}
    # nginx's smooth WRR: a, a, b, a, c, a, a -- never five a's in a row
    assert picks == [a, a, b, a, c, a, a]


def test_round_robin_equal_weights_cycles() -> None:
    e = eps(1, 1, 1)
    rr = RoundRobinBalancer()
    assert [rr.pick(e).port for _ in range(6)] == [1000, 1001, 1002, 1000, 1001, 1002]


def test_weighted_random_is_proportional() -> None:
    a, b = eps(300, 100)
    rb = RandomBalancer(random.Random(7).random)
    counts = Counter(rb.pick([a, b]) for _ in range(4000))
    assert 0.7 < counts[a] / 4000 < 0.8


def test_least_request_prefers_the_idle_endpoint() -> None:
    a, b = eps(100, 100)
    active = {a.key: 10, b.key: 0}
    lr = LeastRequestBalancer(lambda ep: active[ep.key], random.Random(1).random)
    picks = Counter(lr.pick([a, b]) for _ in range(1000))
    # a wins only when both draws land on it (~1/4 of the time)
    assert picks[b] > 650
