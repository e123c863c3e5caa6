"""A small ring of golden-metric samples per service, for the console's live charts.

Each data-plane report adds what happened since its previous report (requests,
errors, the reporter's p99) into the bucket of `bucket` seconds it falls in; the
last `keep` buckets are kept per (workspace, service), at most `max_series`
series (the least recently fed is dropped first). Inbound (provider-side) and
outbound (caller-side) counts are kept apart and a sample prefers the inbound
ones when there are any, as the catalog does, so a call seen at both ends is
counted once.

This ring lives in the memory of the replica that receives the reports: the
control plane uses it only when its store has no samples table (etcd). On the
sqlite store `sample_store.StoredSamples` keeps the same buckets in the store, so
every replica serves the same charts and a restart keeps them.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Any

import anyio
import attrs

from sofamesh.control.catalog import rates

Sides = dict[str, list[float]]  # direction -> [requests, errors, p99_ms]


def sides_of(record: dict[str, Any]) -> Iterator[tuple[tuple[str, str], dict[str, float]]]:
    """((direction, service), counts since the previous report) of a report worth sampling."""
    if record.get("traffic_prev") is None:  # a first report: counts since the start
        return
    for (direction, service), got in rates(record).items():
        if direction in ("inbound", "outbound"):
            yield (direction, service), got


@attrs.define
class Bucket:
    start: float
    sides: Sides = attrs.field(factory=dict)

    def add(self, direction: str, requests: float, errors: float, p99: float) -> None:
        side = self.sides.setdefault(direction, [0.0, 0.0, 0.0])
        side[0] += requests
        side[1] += errors
        side[2] = max(side[2], p99)

    def sample(self, seconds: float) -> dict[str, Any]:
        inbound = self.sides.get("inbound")
        side = inbound if inbound and inbound[0] else self.sides.get("outbound", inbound)
        requests, errors, p99 = side or (0.0, 0.0, 0.0)
        return {
            "time": self.start,
            "rps": round(requests / seconds, 3),
            "success_rate": None if not requests else round(1 - errors / requests, 4),
            "p99_ms": p99 or None,
        }


class Samples:
    def __init__(self, bucket: float = 5.0, keep: int = 180, max_series: int = 20_000) -> None:
        self.bucket = bucket
        self.keep = keep
        self.max_series = max_series
        self._series: OrderedDict[tuple[str, str], deque[Bucket]] = OrderedDict()

    def add(self, workspace: str, record: dict[str, Any], now: float) -> None:
        """Feed one data plane's report (its record, with the previous counters)."""
        start = now - now % self.bucket
        for (direction, service), got in sides_of(record):
            ring = self._ring((workspace, service))
            if not ring or ring[-1].start < start:
                ring.append(Bucket(start))
            ring[-1].add(direction, got["requests"], got["errors"], got["p99_ms"])

    def _ring(self, key: tuple[str, str]) -> deque[Bucket]:
        ring = self._series.get(key)
        if ring is None:
            ring = self._series[key] = deque(maxlen=self.keep)
            if len(self._series) > self.max_series:
                self._series.popitem(last=False)
        self._series.move_to_end(key)
        return ring

    def series(self, workspace: str, service: str, now: float) -> list[dict[str, Any]]:
        """The samples of the last `keep` buckets, oldest first, the current one last."""
        oldest = now - self.bucket * self.keep
        ring = self._series.get((workspace, service), ())
        return [b.sample(self._seconds(b, now)) for b in ring if b.start >= oldest and b.sides]

    def _seconds(self, bucket: Bucket, now: float) -> float:
        """A bucket's length; the current one counts only the time gone by."""
        return max(1.0, min(self.bucket, now - bucket.start))

    async def read(self, workspace: str, service: str, now: float) -> list[dict[str, Any]]:
        return self.series(workspace, service, now)

    async def run(self) -> None:
        await anyio.sleep_forever()  # nothing to save: the ring is this replica's memory
