"""Data-plane records: written to memory on each report, to the store in batches.

A thousand data planes reporting every 5 s is 200 writes a second; each alone
would cost a worker-thread hop and a commit. Reports carry whole state, so the
newest record per data plane is kept here, marked dirty, and `flush_forever`
writes the dirty ones together every `flush_interval` (one transaction on
sqlite). Reads merge this replica's newer records over the store's, so what a
data plane just reported is visible at once here, and on other replicas (HA)
within a flush. A store that is down keeps records dirty until it returns. Data
planes silent for `forget_after` (a day by default) are forgotten.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import anyio

from sofamesh.control.records import Records
from sofamesh.control.store import StoreUnavailable

log = logging.getLogger("sofamesh.control.planes")


class Planes:
    def __init__(
        self, records: Records, flush_interval: float = 0.5, forget_after: float = 86400.0
    ) -> None:
        self.records = records
        self.flush_interval = flush_interval
        self.forget_after = forget_after
        self._latest: dict[str, dict[str, Any]] = {}  # key -> newest record seen here
        self._dirty: set[str] = set()

    async def get(self, key: str) -> dict[str, Any] | None:
        cached = self._latest.get(key)
        if cached is not None:
            return dict(cached)
        record: dict[str, Any] | None = await self.records.get_json(key)
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._latest[key] = record
        self._dirty.add(key)

    async def list(self, workspace: str) -> list[dict[str, Any]]:
        prefix = f"dataplanes/{workspace}/"
        merged = {r["id"]: r for r in await self.records.list_json(prefix) if isinstance(r, dict)}
        for key, record in self._latest.items():
            if key.startswith(prefix):
                merged[record["id"]] = record
        return [merged[k] for k in sorted(merged)]

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        items = [(k, json.dumps(self._latest[k], separators=(",", ":"))) for k in sorted(dirty)]
        if not items:
            return
        try:
            await self.records.store.put_many(items)
        except StoreUnavailable as e:
            self._dirty |= dirty  # written at the next flush after the store returns
            log.warning("data-plane records not saved yet: %s", e)

    async def forget_lost(self, now: float) -> int:
        """Drop the records of data planes silent for `forget_after` (restarts leave new ids)."""
        gone = [
            key
            for key, raw in await self.records.store.list("dataplanes/")
            if json.loads(raw).get("last_seen", 0) < now - self.forget_after
        ]
        for key in gone:
            self._latest.pop(key, None)
            self._dirty.discard(key)
            await self.records.store.delete(key)
        return len(gone)

    async def flush_forever(self) -> None:
        try:
            flushes = 0
            while True:
                await anyio.sleep(self.flush_interval)
                await self.flush()
                flushes += 1
                if flushes % 120 == 0:  # about once a minute
                    with contextlib.suppress(StoreUnavailable):
                        await self.forget_lost(time.time())
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()
