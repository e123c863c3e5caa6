"""Consistent hashing: Envoy's ring hash and Maglev over weighted endpoints."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.endpoint import Endpoint
from sofamesh.upstream.hashing import Maglev, MaglevConfig, RingHash, RingHashConfig, hash64

KEYS = [f"user-{i}" for i in range(5000)]
SMALL = MaglevConfig(table_size=5003)


def endpoints(n: int, weight: int = 100) -> list[Endpoint]:
    return [Endpoint(service="s", host=f"10.0.0.{i}", port=8080, weight=weight) for i in range(n)]


def moved(before: RingHash | Maglev, after: RingHash | Maglev) -> float:
    return sum(before.pick(k) != after.pick(k) for k in KEYS) / len(KEYS)


def test_hash64_is_stable_and_seeded() -> None:
    assert hash64("abc") == hash64("abc")
    assert hash64("abc", 0) != hash64("abc", 1)
    assert 0 <= hash64("x") < 2**64


def test_maglev_moves_few_keys_when_one_endpoint_leaves() -> None:
    eps = endpoints(10)
    before, after = Maglev(eps), Maglev(eps[:-1])
    gone = eps[-1]
    share = moved(before, after)
    assert share < 0.13  # ideal is 1/10
    # every key of the leaving endpoint moved, and few others did
    assert all(after.pick(k) != gone for k in KEYS)


def test_ring_hash_moves_few_keys_when_one_endpoint_leaves() -> None:
    eps = endpoints(10)
    before, after = RingHash(eps), RingHash(eps[:-1])
    # 1/10 ideal; Envoy's renormalised ring adds entries to the survivors
    assert moved(before, after) < 0.2


def test_ring_hash_keys_of_other_endpoints_stay_when_ring_size_is_pinned() -> None:
    eps = endpoints(8)
    cfg = RingHashConfig(min_ring_size=800, max_ring_size=800)  # 100 entries each before
    before, after = (
        RingHash(eps, cfg),
        RingHash(eps[:-1], RingHashConfig(min_ring_size=700, max_ring_size=700)),
    )
    for k in KEYS:
        if before.pick(k) != eps[-1]:
            assert after.pick(k) == before.pick(k)


def test_maglev_adding_an_endpoint_moves_about_its_share() -> None:
    eps = endpoints(9)
    assert moved(Maglev(eps), Maglev(endpoints(10))) < 0.13


@pytest.mark.parametrize("kind", ["ring", "maglev"])
def test_weights_set_the_shares(kind: str) -> None:
    eps = [
        Endpoint(service="s", host="a", port=1, weight=100),
        Endpoint(service="s", host="b", port=1, weight=200),
        Endpoint(service="s", host="c", port=1, weight=300),
    ]
    lb = RingHash(eps) if kind == "ring" else Maglev(eps, SMALL)
    counts = Counter(lb.pick(k) for k in KEYS * 2)
    shares = [counts[e] / (2 * len(KEYS)) for e in eps]
    assert shares == pytest.approx([1 / 6, 2 / 6, 3 / 6], abs=0.06)


def test_maglev_table_shares_follow_weights() -> None:
    eps = [
        Endpoint(service="s", host="a", port=1, weight=1),
        Endpoint(service="s", host="b", port=1, weight=3),
    ]
    shares = Maglev(eps, SMALL).shares()
    assert shares[eps[0]] == pytest.approx(0.25, abs=0.01)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_zero_weight_endpoint_gets_nothing() -> None:
    eps = [*endpoints(3), Endpoint(service="s", host="z", port=1, weight=0)]
    for lb in (RingHash(eps), Maglev(eps, SMALL)):
        assert all(lb.pick(k) != eps[-1] for k in KEYS[:500])


def test_empty_membership_picks_none() -> None:
    assert RingHash([]).pick("k") is None
    assert Maglev([], SMALL).pick("k") is None


def test_order_of_endpoints_does_not_matter() -> None:
    eps = endpoints(6)
    shuffled = eps[:]
    random.Random(1).shuffle(shuffled)
    for a, b in (
        (RingHash(eps), RingHash(shuffled)),
        (Maglev(eps, SMALL), Maglev(shuffled, SMALL)),
    ):
        assert all(a.pick(k) == b.pick(k) for k in KEYS[:500])


def test_ring_size_follows_min_ring_size() -> None:
    assert len(RingHash(endpoints(3), RingHashConfig(min_ring_size=300))) == 300
    assert len(RingHash(endpoints(3), RingHashConfig(min_ring_size=301))) == 303


def test_ring_size_capped_by_max_ring_size() -> None:
    eps = [Endpoint(service="s", host="a", port=1, weight=1), *endpoints(1, weight=10000)]
    ring = RingHash(eps, RingHashConfig(min_ring_size=64, max_ring_size=2048))
    assert len(ring) <= 2049


def test_maglev_table_size_must_be_prime() -> None:
    with pytest.raises(ValueError):
        MaglevConfig(table_size=65536)


def test_maglev_default_table_builds() -> None:
    m = Maglev(endpoints(3))
    assert sum(m.shares().values()) == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=2, max_size=8), st.data())
def test_removing_an_endpoint_only_moves_a_bounded_share(
    weights: list[int], data: st.DataObject
) -> None:
    eps = [Endpoint(service="s", host=f"h{i}", port=1, weight=w) for i, w in enumerate(weights)]
    gone = data.draw(st.integers(0, len(eps) - 1))
    rest = eps[:gone] + eps[gone + 1 :]
    before, after = Maglev(eps, SMALL), Maglev(rest, SMALL)
    own = before.shares().get(eps[gone], 0.0)
    keys = KEYS[:1500]
    share = sum(before.pick(k) != after.pick(k) for k in keys) / len(keys)
    assert share <= own + 0.15  # its own keys, plus a little Maglev churn
    assert all(after.pick(k) in rest for k in keys[:200])
