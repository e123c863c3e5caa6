from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.config.model import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation
from sofamesh.upstream.balancers import (
    BALANCERS,
    DEFAULT_HASH_HEADER,
    TABLES_KEPT,
    BalancerSpec,
    HashBalancer,
    LeastRequestBalancer,
    RandomBalancer,
    RoundRobinBalancer,
    make_balancer,
    make_hash_balancer,
)
from sofamesh.upstream.hashing import MaglevConfig


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


class SmoothReference:
    """nginx's smooth weighted round robin as written, a walk per pick: what the balancer
    must pick, whether it walks or takes the next index."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}

    def pick(self, candidates: list[Endpoint]) -> Endpoint:
        if len(candidates) == 1:
            return candidates[0]
        total, best, best_weight = 0, None, 0
        for ep in candidates:
            w = ep.weight or 1
            self.current[ep.key] = c = self.current.get(ep.key, 0) + w
            total += w
            if best is None or c > best_weight:
                best, best_weight = ep, c
        assert best is not None
        self.current[best.key] = best_weight - total
        return best


POOL = [Endpoint("svc", "127.0.0.1", 2000 + i, weight=1 + (i == 4)) for i in range(6)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sets(st.integers(0, 5), min_size=1), st.integers(1, 12)),
        min_size=1,
        max_size=8,
    )
)
def test_round_robin_picks_as_the_smooth_walk_does(runs: list[tuple[set[int], int]]) -> None:
    # Each run repeats one list object (a rotation), as the cluster and subsets pass them;
    # the next run brings another, of equal weights or not (port 2004 weighs 2).
    rr, ref = RoundRobinBalancer(), SmoothReference()
    for members, picks in runs:
        candidates = [POOL[i] for i in sorted(members)]
        for _ in range(picks):
            assert rr.pick(candidates) is ref.pick(candidates)
        fresh = list(candidates)  # the same endpoints in a list of its own (a retry's)
        assert rr.pick(fresh) is ref.pick(fresh)


def test_round_robin_takes_turns_by_index_between_other_lists() -> None:
    a, b, c = eps(1, 1, 1)
    rr = RoundRobinBalancer()
    rotation = [a, b, c]
    assert [rr.pick(rotation) for _ in range(2)] == [a, b]
    # Another list: the walk, from the weights the turns left (a -1, b -1, c 2).
    assert rr.pick([a, c]) is c
    assert [rr.pick(rotation) for _ in range(4)] == [c, a, b, c]


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


# -- the registry ---------------------------------------------------------------------------


def test_every_name_makes_its_balancer() -> None:
    kinds = {name: type(make_balancer(name)) for name in BALANCERS}
    assert kinds == {
        "round_robin": RoundRobinBalancer,
        "random": RandomBalancer,
        "weighted_random": RandomBalancer,
        "least_request": LeastRequestBalancer,
        "ring_hash": HashBalancer,
        "maglev": HashBalancer,
    }


def test_policy_accepts_every_registered_name_and_rejects_others() -> None:
    for name in BALANCERS:
        assert PolicyConfig(balancer=name).balancer == name
    with pytest.raises(ValueError, match="unknown balancer 'fastest'"):
        make_balancer("fastest")
    with pytest.raises(ValueError, match="does not hash"):
        make_hash_balancer("round_robin")


def test_least_request_reads_in_flight_counts_through_the_spec() -> None:
    a, b = eps(100, 100)
    active = {a.key: 10, b.key: 0}
    lr = make_balancer("least_request", BalancerSpec(active=lambda ep: active[ep.key]))
    assert Counter(lr.pick([a, b]) for _ in range(400))[b] > 250


# -- hashing named in the policy ------------------------------------------------------------


def keyed(key: str, header: str = DEFAULT_HASH_HEADER) -> Invocation:
    inv = Invocation("http", "svc", "/")
    inv.headers.set(header, key)
    return inv


def hosts(n: int) -> list[Endpoint]:
    return [Endpoint("svc", f"10.0.0.{i}", 8080) for i in range(n)]


KEYS = [f"user-{i}" for i in range(2000)]


@pytest.mark.parametrize("name", ["ring_hash", "maglev"])
def test_policy_hash_balancer_keeps_a_key_on_one_endpoint(name: str) -> None:
    members = hosts(5)
    first, second = make_balancer(name), make_balancer(name)
    picks = {k: first.pick(members, keyed(k)) for k in KEYS}
    # the same key lands on the same endpoint, in this balancer and in another process's
    assert all(first.pick(members, keyed(k)) is picks[k] for k in KEYS[:200])
    assert all(second.pick(list(reversed(members)), keyed(k)) == picks[k] for k in KEYS[:200])
    spread = Counter(picks.values())
    assert set(spread) == set(members)
    assert max(spread.values()) < 2 * len(KEYS) / len(members)  # no endpoint takes twice its share


@pytest.mark.parametrize("name", ["ring_hash", "maglev"])
def test_policy_hash_balancer_moves_only_a_leaving_endpoints_keys(name: str) -> None:
    members = hosts(10)
    balancer = make_balancer(name)
    before = {k: balancer.pick(members, keyed(k)) for k in KEYS}
    gone = members[-1]
    after = {k: balancer.pick(members[:-1], keyed(k)) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert len(moved) / len(KEYS) < 0.2  # the leaving endpoint's tenth, and few others
    bystanders = [k for k in moved if before[k] != gone]
    assert len(bystanders) / len(KEYS) < 0.1


def test_policy_hash_balancer_without_the_key_picks_by_weight() -> None:
    a, b = eps(300, 100)
    balancer = make_balancer("ring_hash", BalancerSpec(rand=random.Random(5).random))
    unkeyed = Counter(balancer.pick([a, b], Invocation("http", "svc", "/")) for _ in range(4000))
    assert 0.7 < unkeyed[a] / 4000 < 0.8
    assert len({balancer.pick([a, b]) for _ in range(50)}) == 2  # no call: also by weight


def test_policy_hash_balancer_table_is_built_once_per_membership() -> None:
    members = hosts(4)
    balancer = make_hash_balancer("maglev", BalancerSpec(hash_config=MaglevConfig(table_size=251)))
    for k in KEYS[:100]:
        balancer.pick(members, keyed(k))
    assert balancer.table_builds == 1
    for n in range(2, 2 + TABLES_KEPT + 2):  # retries exclude endpoints: a table per subset
        balancer.pick(hosts(n), keyed("k"))
    assert balancer.table_builds == 1 + TABLES_KEPT + 1  # hosts(4) was built again...
    assert len(balancer._tables) == TABLES_KEPT  # ...and only a few tables are kept
