"""A latency lands in the bucket `bisect_left` over the bounds names, whichever way it is found."""

from __future__ import annotations

import bisect
import math

import pytest

from sofamesh.model import Status
from sofamesh.stats import BUCKETS_MS, CallStats, Histogram

EDGES = [-1.0, 0.0, 0.25, 0.5, 0.5000001, 1.0, 2.5, 7.0, 60000.0, 60000.5, math.inf, math.nan]
LATENCIES = EDGES + [b for bound in BUCKETS_MS for b in (bound - 1e-9, float(bound), bound + 1e-9)]


@pytest.mark.parametrize("ms", LATENCIES)
def test_record_and_observe_choose_bisects_bucket(ms: float) -> None:
    want = bisect.bisect_left(BUCKETS_MS, ms)
    h = Histogram()
    h.observe(ms)
    cs = CallStats()
    cs.record(Status.OK, ms, 200)
    for counts in (h.counts, cs.latency.counts):
        assert counts.index(1) == want and sum(counts) == 1
    assert cs.by_status == {Status.OK: {200: 1}} and cs.total == 1


def test_runs_of_like_calls_are_counted_when_read() -> None:
    cs = CallStats()
    ends = [(Status.OK, 200)] * 3 + [(Status.OK, 404), (Status.TIMEOUT, 0), (Status.OK, 200)] * 2
    for status, code in ends:
        cs.record(status, 1.0, code)
    assert cs.by_status == {Status.OK: {200: 5, 404: 2}, Status.TIMEOUT: {0: 2}}
    assert (cs.total, cs.errors) == (9, 2)
    cs.record(Status.OK, 1.0, 200)
    assert cs.as_dict()["rq_status"] == {"ok": 8, "timeout": 2}
    cs.record(Status.OK, 1.0, 200)
    cs.reset()
    cs.record(Status.TIMEOUT, 1.0)
    assert cs.by_status == {Status.TIMEOUT: {0: 1}} and cs.total == 1


def test_total_and_count_are_read_from_the_counts_kept() -> None:
    cs = CallStats()
    for status in (Status.OK, Status.OK, Status.TIMEOUT, Status.OK, Status.OK):
        cs.record(status, 1.0, 0)
    # The last run of OKs is not folded into `by_status` yet, and counts all the same.
    assert (cs.total, cs.latency.count, cs.errors) == (5, 5, 1)
    cs.reset()
    assert (cs.total, cs.latency.count) == (0, 0)
    cs.record(Status.OK, 2.0, 0)
    assert (cs.total, cs.latency.count, cs.as_dict()["rq_time_ms"]["mean"]) == (1, 1, 2.0)
