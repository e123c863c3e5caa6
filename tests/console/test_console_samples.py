"""The samples per service: buckets, inbound preferred, bounded; kept in the sqlite store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sofamesh.control.sample_store import StoredSamples
from sofamesh.control.samples import Samples
from sofamesh.control.sqlite_store import SqliteStore


def record(
    last_seen: float,
    now: list[tuple[str, str, int, int]],
    before: list[tuple[str, str, int, int]] | None,
) -> dict[str, Any]:
    def rows(items: list[tuple[str, str, int, int]]) -> list[dict[str, Any]]:
        return [
            {"direction": d, "service": s, "requests": r, "errors": e, "p99": 12.0}
            for d, s, r, e in items
        ]

    rec: dict[str, Any] = {"last_seen": last_seen, "traffic": rows(now)}
    if before is not None:
        rec["traffic_prev"] = rows(before)
        rec["traffic_prev_time"] = last_seen - 1.0
    return rec


def test_first_report_is_not_a_sample_and_later_ones_fill_buckets() -> None:
    ring = Samples(bucket=5.0, keep=3)
    ring.add("a", record(100.0, [("inbound", "s", 500, 0)], None), 100.0)
    assert ring.series("a", "s", 100.0) == []
    ring.add("a", record(101.0, [("inbound", "s", 510, 1)], [("inbound", "s", 500, 0)]), 101.0)
    ring.add("a", record(102.0, [("inbound", "s", 520, 1)], [("inbound", "s", 510, 1)]), 102.0)
    [sample] = ring.series("a", "s", 102.0)
    # 20 requests in the bucket [100, 105), 2 s of it gone by.
    assert sample == {"time": 100.0, "rps": 10.0, "success_rate": 0.95, "p99_ms": 12.0}
    assert ring.series("b", "s", 102.0) == [] and ring.series("a", "t", 102.0) == []


def test_inbound_counts_win_over_callers_outbound_counts() -> None:
    ring = Samples(bucket=10.0)
    caller = record(101.0, [("outbound", "s", 30, 3)], [("outbound", "s", 0, 0)])
    ring.add("a", caller, 101.0)
    assert ring.series("a", "s", 110.0)[0]["success_rate"] == 0.9
    provider = record(102.0, [("inbound", "s", 30, 0)], [("inbound", "s", 0, 0)])
    ring.add("a", provider, 102.0)
    assert ring.series("a", "s", 110.0)[0] == {
        "time": 100.0,
        "rps": 3.0,
        "success_rate": 1.0,
        "p99_ms": 12.0,
    }


def test_old_buckets_and_series_beyond_the_limit_are_dropped() -> None:
    ring = Samples(bucket=1.0, keep=3, max_series=2)
    for t in range(10):
        rec = record(float(t), [("inbound", "s", t + 1, 0)], [("inbound", "s", t, 0)])
        ring.add("a", rec, float(t) + 0.5)
    assert [s["time"] for s in ring.series("a", "s", 9.5)] == [7.0, 8.0, 9.0]
    assert ring.series("a", "s", 100.0) == []  # all older than 15 min of buckets
    for name in ("t", "u"):
        ring.add("a", record(1.0, [("inbound", name, 1, 0)], [("inbound", name, 0, 0)]), 1.0)
    assert ring.series("a", "s", 9.5) == []  # the least recently fed series went first


@pytest.mark.anyio
async def test_stored_samples_are_shared_by_two_stores_on_one_file_and_kept(
    tmp_path: Path, anyio_backend: str
) -> None:
    path = str(tmp_path / "control.db")
    fed = record(101.0, [("inbound", "s", 30, 3)], [("inbound", "s", 0, 0)])
    async with SqliteStore(path) as one, SqliteStore(path) as two:
        a, b = StoredSamples(one, bucket=10.0, keep=3), StoredSamples(two, bucket=10.0, keep=3)
        a.add("ws", fed, 101.0)
        assert await b.read("ws", "s", 105.0) == []  # not flushed yet
        assert (await a.read("ws", "s", 105.0))[0]["rps"] == 6.0  # pending, seen here
        await a.flush(105.0)
        b.add("ws", fed, 102.0)  # another replica's report in the same bucket adds up
        await b.flush(106.0)
        expected = {"time": 100.0, "rps": 6.0, "success_rate": 0.9, "p99_ms": 12.0}
        assert await a.read("ws", "s", 110.0) == [expected]
    async with SqliteStore(path) as again:  # a restart keeps them
        kept = StoredSamples(again, bucket=10.0, keep=3)
        assert await kept.read("ws", "s", 110.0) == [expected]
        await kept.flush(141.0)  # older than 3 buckets of 10 s: pruned
        assert await kept.read("ws", "s", 110.0) == []
