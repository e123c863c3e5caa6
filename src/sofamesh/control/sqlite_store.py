"""The embedded store: one sqlite file, one table of keys and JSON values.

sqlite calls block, so each runs in a worker thread (`anyio.to_thread`), one at a
time (a capacity limiter of one: a single connection, no locking questions). WAL
mode with `synchronous=NORMAL` keeps a commit cheap (no fsync per write, still
crash-safe for the database; the last commits may be lost on power failure).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from sofamesh.control.store import Items, StoreUnavailable

T = TypeVar("T")

_UPSERT = (
    "INSERT INTO kv (key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)

    async def __aenter__(self) -> SqliteStore:
        self._db = await anyio.to_thread.run_sync(self._open)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        db, self._db = self._db, None
        if db is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(db.close, limiter=self._limiter)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        return db

    async def _run(self, sql: str, *args: Any) -> sqlite3.Cursor:
        db = self._db
        if db is None:
            raise StoreUnavailable("the store is closed")

        def run() -> sqlite3.Cursor:
            return db.execute(sql, args)

        try:
            return await anyio.to_thread.run_sync(run, limiter=self._limiter)
        except sqlite3.OperationalError as e:
            raise StoreUnavailable(f"sqlite: {e}") from e

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` with the connection in the worker thread (tables beyond `kv`: samples)."""
        db = self._db
        if db is None:
            raise StoreUnavailable("the store is closed")
        try:
            return await anyio.to_thread.run_sync(fn, db, limiter=self._limiter)
        except sqlite3.OperationalError as e:
            raise StoreUnavailable(f"sqlite: {e}") from e

    async def get(self, key: str) -> str | None:
        row = (await self._run("SELECT value FROM kv WHERE key = ?", key)).fetchone()
        return None if row is None else str(row[0])

    async def list(self, prefix: str) -> list[tuple[str, str]]:
        # A range scan on the primary key: every key >= prefix and < prefix + U+FFFF.
        cur = await self._run(
            "SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key",
            prefix,
            prefix + "\uffff",
        )
        return [(str(k), str(v)) for k, v in cur.fetchall()]

    async def put(self, key: str, value: str) -> None:
        await self._run(_UPSERT, key, value)

    async def put_many(self, items: Items) -> None:
        db = self._db
        if db is None:
            raise StoreUnavailable("the store is closed")

        def run() -> None:
            with db:  # one transaction
                db.execute("BEGIN")
                db.executemany(_UPSERT, items)

        try:
            await anyio.to_thread.run_sync(run, limiter=self._limiter)
        except sqlite3.OperationalError as e:
            raise StoreUnavailable(f"sqlite: {e}") from e

    async def create(self, key: str, value: str) -> bool:
        cur = await self._run("INSERT OR IGNORE INTO kv (key, value) VALUES (?, ?)", key, value)
        return cur.rowcount == 1

    async def delete(self, key: str) -> bool:
        cur = await self._run("DELETE FROM kv WHERE key = ?", key)
        return cur.rowcount == 1
