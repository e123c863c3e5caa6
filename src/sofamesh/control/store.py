"""Where the control plane keeps its state: a small key-value `Store` protocol.

Every record (users, workspaces, tokens, rule versions, data planes, the audit
log) is a JSON value under a path-like key (`records.py` owns the layout), so a
backend needs only five operations. `create` is the one atomic primitive the
records need (allocate a rule version, add a user once): two control-plane
processes sharing one store (etcd) race on it safely.

Backends: `sqlite:///PATH` (`sqlite_store.py`, the embedded default) and
`etcd://HOST:PORT` (`etcd_store.py`, for HA). `LastKnownStore` wraps either:
when the backend is down, reads answer from the last values seen and writes
raise `StoreUnavailable` (the API turns that into 503).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol
from urllib.parse import urlsplit

Items = list[tuple[str, str]]  # (key, value) pairs


class StoreUnavailable(Exception):
    """The backing store could not be reached; nothing was written."""


class Store(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def list(self, prefix: str) -> list[tuple[str, str]]:
        """Every (key, value) whose key starts with `prefix`, in key order."""
        ...

    async def put(self, key: str, value: str) -> None: ...

    async def put_many(self, items: Items) -> None:
        """Put every (key, value), in one transaction where the backend has them."""
        ...

    async def create(self, key: str, value: str) -> bool:
        """Put `value` only if `key` does not exist; False if it did (nothing written)."""
        ...

    async def delete(self, key: str) -> bool: ...


class LastKnownStore:
    """A `Store` that keeps answering reads with the last values seen while the backend is down."""

    def __init__(self, backend: Store) -> None:
        self.backend = backend
        self._gets: dict[str, str | None] = {}
        self._lists: dict[str, list[tuple[str, str]]] = {}
        self.failures = 0

    async def get(self, key: str) -> str | None:
        try:
            value = await self.backend.get(key)
        except StoreUnavailable:
            self.failures += 1
            if key in self._gets:
                return self._gets[key]
            raise
        self._gets[key] = value
        return value

    async def list(self, prefix: str) -> list[tuple[str, str]]:
        try:
            items = await self.backend.list(prefix)
        except StoreUnavailable:
            self.failures += 1
            if prefix in self._lists:
                return self._lists[prefix]
            raise
        self._lists[prefix] = items
        return items

    async def put(self, key: str, value: str) -> None:
        await self.backend.put(key, value)
        self._gets[key] = value

    async def put_many(self, items: Items) -> None:
        await self.backend.put_many(items)
        self._gets.update(items)

    async def create(self, key: str, value: str) -> bool:
        created = await self.backend.create(key, value)
        if created:
            self._gets[key] = value
        return created

    async def delete(self, key: str) -> bool:
        found = await self.backend.delete(key)
        self._gets[key] = None
        return found


def open_store(url: str) -> AbstractAsyncContextManager[Store]:
    """The store named by `url`, as an async context manager that closes it."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from sofamesh.control.sqlite_store import SqliteStore

        return SqliteStore(parts.path)
    if parts.scheme == "etcd":
        from sofamesh.control.etcd_store import EtcdStore

        store: AbstractAsyncContextManager[Store] = EtcdStore(url)
        return store
    raise ValueError(f"unknown store scheme {parts.scheme!r}")
