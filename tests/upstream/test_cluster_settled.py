"""`Cluster.settled`, the OK call's record, leaves the state `Cluster.record` would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.clock import FakeClock
from sofamesh.config import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.model import Status
from sofamesh.stats import Stats
from sofamesh.upstream.cluster import Cluster
from sofamesh.upstream.outlier import HostState, OutlierConfig

EPS = frozenset(Endpoint("svc", "127.0.0.1", 7000 + i) for i in range(3))
POLICY = PolicyConfig(outlier=OutlierConfig(consecutive_failures=2, base_ejection_time=1.0))


def cluster() -> tuple[Cluster, Stats]:
    stats = Stats()
    c = Cluster("svc", POLICY, stats, FakeClock())
    c.update(EPS)
    return c, stats


def state(c: Cluster, stats: Stats) -> tuple[object, ...]:
    rows = {k: (cs.by_status, cs.latency.counts) for k, cs in stats.endpoints.items()}
    return dict(c.outlier.hosts), c.outlier.statistics(100.0), stats.counters, rows


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.floats(0, 0.8)), max_size=60))
def test_settled_leaves_what_record_would(calls: list[tuple[int, bool, float]]) -> None:
    (recorded, by_record), (settled, by_settled) = cluster(), cluster()
    eps = sorted(EPS, key=lambda e: e.key)
    now = 0.0
    for i, ok, gap in calls:
        now += gap
        ep = eps[i]
        if ok:
            recorded.record(ep, False, Status.OK, 2.0, now)
            settled.settled(ep, 2.0, now)
        else:
            for c in (recorded, settled):
                c.record(ep, True, Status.APP_ERROR, 2.0, now)
    assert state(recorded, by_record) == state(settled, by_settled)


def test_settled_ends_a_streak_and_counts_the_call() -> None:
    c, stats = cluster()
    ep = min(EPS, key=lambda e: e.key)
    c.record(ep, True, Status.APP_ERROR, 1.0, 0.0)
    assert c.outlier.hosts[ep.key] == HostState(streak=1)
    c.settled(ep, 1.0, 0.5)
    assert c.outlier.hosts[ep.key] == HostState(streak=0)
    row = stats.endpoints[("svc", ep.address)]
    assert row.total == 2 and row.errors == 1
