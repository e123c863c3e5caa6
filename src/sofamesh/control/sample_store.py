"""The console's samples in the sqlite store, so every replica serves the same charts.

One row per (workspace, service, bucket) holds the inbound and outbound requests,
errors and p99 of the data planes' reports that fell in the bucket. Reports add
into a pending batch in memory; `flush_forever` writes it every `flush_interval`
as one transaction of upserts that *add* to the row (`requests = requests +
excluded.requests`), so two control-plane processes sharing the file, each
receiving other data planes' reports, add up without reading first. Each flush
also deletes the buckets older than `keep` buckets (15 minutes by default), so
the table stays bounded by services x `keep`. A read merges the store's rows with
this replica's pending batch, so a report shows at once here and on the other
replicas within a flush; a restarted replica reads what was flushed before.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from typing import Any

import anyio

from sofamesh.control.samples import Bucket, Samples, Sides, sides_of
from sofamesh.control.sqlite_store import SqliteStore
from sofamesh.control.store import StoreUnavailable

log = logging.getLogger("sofamesh.control.samples")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS samples ("
    " workspace TEXT NOT NULL, service TEXT NOT NULL, bucket REAL NOT NULL,"
    " in_requests REAL NOT NULL, in_errors REAL NOT NULL, in_p99 REAL NOT NULL,"
    " out_requests REAL NOT NULL, out_errors REAL NOT NULL, out_p99 REAL NOT NULL,"
    " PRIMARY KEY (workspace, service, bucket))",
    "CREATE INDEX IF NOT EXISTS samples_bucket ON samples (bucket)",
)
_ADD = (
    "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(workspace, service, bucket) DO UPDATE SET "
    "in_requests = in_requests + excluded.in_requests,"
    " in_errors = in_errors + excluded.in_errors,"
    " in_p99 = max(in_p99, excluded.in_p99),"
    " out_requests = out_requests + excluded.out_requests,"
    " out_errors = out_errors + excluded.out_errors,"
    " out_p99 = max(out_p99, excluded.out_p99)"
)
_READ = (
    "SELECT bucket, in_requests, in_errors, in_p99, out_requests, out_errors, out_p99 "
    "FROM samples WHERE workspace = ? AND service = ? AND bucket >= ? ORDER BY bucket"
)
_PRUNE = "DELETE FROM samples WHERE bucket < ?"

Key = tuple[str, str, float]  # (workspace, service, bucket start)


def _row(sides: Sides) -> list[float]:
    inbound = sides.get("inbound", [0.0, 0.0, 0.0])
    outbound = sides.get("outbound", [0.0, 0.0, 0.0])
    return [*inbound, *outbound]


def _bucket(start: float, row: tuple[float, ...] | list[float]) -> Bucket:
    b = Bucket(start)
    for direction, (requests, errors, p99) in (("inbound", row[0:3]), ("outbound", row[3:6])):
        if requests or errors or p99:
            b.add(direction, requests, errors, p99)
    return b


class StoredSamples:
    """The samples of every service, kept in the control plane's sqlite file."""

    def __init__(
        self, store: SqliteStore, bucket: float = 5.0, keep: int = 180, flush_interval: float = 1.0
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.keep = keep
        self.flush_interval = flush_interval
        self._pending: dict[Key, Bucket] = {}
        self._ready = False
        self._pruned = 0.0  # when expired buckets were last deleted

    def add(self, workspace: str, record: dict[str, Any], now: float) -> None:
        """Feed one data plane's report (its record, with the previous counters)."""
        start = now - now % self.bucket
        for (direction, service), got in sides_of(record):
            b = self._pending.get((workspace, service, start))
            if b is None:
                b = self._pending[(workspace, service, start)] = Bucket(start)
            b.add(direction, got["requests"], got["errors"], got["p99_ms"])

    async def read(self, workspace: str, service: str, now: float) -> list[dict[str, Any]]:
        """The samples of the last `keep` buckets, oldest first, the current one last."""
        await self._schema()
        oldest = now - self.bucket * self.keep

        def query(db: sqlite3.Connection) -> list[tuple[float, ...]]:
            return list(db.execute(_READ, (workspace, service, oldest)).fetchall())

        buckets = {row[0]: _bucket(row[0], row[1:]) for row in await self.store.call(query)}
        for (ws, svc, start), pending in self._pending.items():
            if ws == workspace and svc == service and start >= oldest:
                into = buckets.setdefault(start, Bucket(start))
                for direction, (requests, errors, p99) in pending.sides.items():
                    into.add(direction, requests, errors, p99)
        return [
            b.sample(max(1.0, min(self.bucket, now - b.start)))
            for _, b in sorted(buckets.items())
            if b.sides
        ]

    async def flush(self, now: float) -> None:
        """Write the pending batch (added into the rows) and drop the expired buckets."""
        prune = now - self._pruned >= self.bucket  # buckets expire one bucket at a time
        if not self._pending and not prune:
            return  # an idle control plane writes nothing
        await self._schema()
        batch, self._pending = self._pending, {}
        rows = [(ws, svc, start, *_row(b.sides)) for (ws, svc, start), b in batch.items()]
        oldest = now - self.bucket * self.keep

        def write(db: sqlite3.Connection) -> None:
            with db:  # one transaction
                db.execute("BEGIN")
                db.executemany(_ADD, rows)
                if prune:
                    db.execute(_PRUNE, (oldest,))

        try:
            await self.store.call(write)
            self._pruned = now if prune else self._pruned
        except StoreUnavailable as e:
            for key, b in batch.items():  # kept for the next flush, added to newer reports
                into = self._pending.setdefault(key, Bucket(key[2]))
                for direction, (requests, errors, p99) in b.sides.items():
                    into.add(direction, requests, errors, p99)
            log.warning("samples not saved yet: %s", e)

    async def _schema(self) -> None:
        if self._ready:
            return

        def create(db: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                db.execute(statement)

        await self.store.call(create)
        self._ready = True

    async def run(self) -> None:
        try:
            while True:
                await anyio.sleep(self.flush_interval)
                with contextlib.suppress(StoreUnavailable):
                    await self.flush(time.time())
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreUnavailable):
                await self.flush(time.time())


def samples_for(store: object) -> StoredSamples | Samples:
    """Samples in the store when it is sqlite; else (etcd) a ring in this replica's memory."""
    if isinstance(store, SqliteStore):
        return StoredSamples(store)
    return Samples()
