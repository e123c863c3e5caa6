"""Outage tolerance for any registry: the last known state, in memory and in a local file.

`SnapshotRegistry(inner, path)` wraps a registry (etcd, ZooKeeper, ...):

- every snapshot the inner registry yields for a watched service (and every
  version of a watched document) is kept in memory and written to `path`,
  batched every `flush_interval` seconds and atomically (a temporary file,
  then `os.replace`);
- a watch whose inner registry has not answered within `cold_start_wait`
  seconds is served the stored snapshot of that service, then follows the
  registry as soon as it answers. So a sidecar or SDK that starts while the
  registry is down routes on what the last run knew;
- the inner registries never yield an empty snapshot because of an error (see
  base.py), and neither does this wrapper: only an explicit removal empties it.

File format (one JSON object; entries carry the wall-clock time they were
learnt, and a flush merges with what other processes wrote, newest entry wins)::

    {"version": 1,
     "services": {"<service>": {"at": 1764090000.5, "endpoints": [<Endpoint.to_dict()>, ...]}},
     "documents": {"<name>": {"at": 1764090000.5, "text": "..." or null}}}
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import attrs

from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import RegistryError, Snapshot
from sofamesh.registry.resilient import Latest

log = logging.getLogger("sofamesh.registry.snapshot")

FORMAT_VERSION = 1
Entries = dict[str, dict[str, Any]]  # kind ("services" | "documents") -> name -> entry


class SnapshotFile:
    """The file that keeps the last known state across restarts (sync I/O: call in a thread)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> Entries:
        """What the file holds; nothing if it is missing or unreadable (logged)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"services": {}, "documents": {}}
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable registry snapshot %s: %s", self.path, e)
            return {"services": {}, "documents": {}}
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            log.warning("ignoring registry snapshot %s: unknown format", self.path)
            return {"services": {}, "documents": {}}
        return {kind: _entries(data.get(kind)) for kind in ("services", "documents")}

    def merge_and_save(self, mine: Entries) -> None:
        """Write `mine` over what the file holds now, keeping the newer entry of each name."""
        merged = self.load()
        for kind, entries in mine.items():
            for name, entry in entries.items():
                old = merged[kind].get(name)
                if old is None or float(old.get("at", 0)) <= float(entry["at"]):
                    merged[kind][name] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump({"version": FORMAT_VERSION, **merged}, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _entries(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, dict) and "at" in v}


def _snapshot_of(entry: dict[str, Any]) -> Snapshot | None:
    try:
        # No marks and no lease: a stored snapshot only stands in until the registry answers.
        return Snapshot(Endpoint.from_dict(d) for d in entry["endpoints"])
    except (KeyError, TypeError, ValueError):
        return None


@attrs.frozen
class SnapshotStatistics:
    served_from_file: int  # watches that started on the stored snapshot
    flushes: int
    flush_errors: int


class SnapshotRegistry:
    """A registry wrapper that remembers, persists and, when the registry is down, serves."""

    def __init__(
        self,
        inner: Any,
        path: str | os.PathLike[str],
        *,
        cold_start_wait: float = 1.0,
        flush_interval: float = 0.5,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if cold_start_wait < 0 or flush_interval < 0:
            raise ValueError("cold_start_wait and flush_interval must not be negative")
        self.inner = inner
        self.file = SnapshotFile(path)
        self.cold_start_wait = cold_start_wait
        self.flush_interval = flush_interval
        self._wall = wall_clock
        self._stored: Entries = {"services": {}, "documents": {}}
        self._mine: Entries = {"services": {}, "documents": {}}
        self._dirty: anyio.Event | None = None
        self._stack = AsyncExitStack()
        self._served = self._flushes = self._flush_errors = 0

    async def __aenter__(self) -> SnapshotRegistry:
        async with AsyncExitStack() as stack:
            self._stored = await anyio.to_thread.run_sync(self.file.load)
            await stack.enter_async_context(self.inner)
            self._dirty = anyio.Event()
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(self._flush)
            stack.callback(tg.cancel_scope.cancel)
            tg.start_soon(self._flush_forever)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(et, e, tb)

    def statistics(self) -> SnapshotStatistics:
        return SnapshotStatistics(self._served, self._flushes, self._flush_errors)

    def stored_snapshot(self, service: str) -> Snapshot | None:
        """What we would serve for `service` if the registry did not answer."""
        entry = self._mine["services"].get(service) or self._stored["services"].get(service)
        return _snapshot_of(entry) if entry else None

    # -- the Registry protocol --------------------------------------------------------------

    async def publish(self, endpoint: Endpoint) -> None:
        await self.inner.publish(endpoint)

    async def unpublish(self, endpoint: Endpoint) -> None:
        await self.inner.unpublish(endpoint)

    def forget(self, endpoint: Endpoint) -> None:
        """The backend's `forget`, where it has one (see `FileRegistry.forget`)."""
        forget = getattr(self.inner, "forget", None)
        if forget is not None:
            forget(endpoint)

    async def list_services(self) -> list[str]:
        try:
            return list(await self.inner.list_services())
        except RegistryError:
            known = {**self._stored["services"], **self._mine["services"]}
            return sorted(name for name, entry in known.items() if entry.get("endpoints"))

    def watch(self, service: str) -> AbstractAsyncContextManager[AsyncIterator[Snapshot]]:
        stored = self.stored_snapshot(service)
        return self._cached_watch(
            "services",
            service,
            self.inner.watch,
            None if stored is None else (stored,),
            lambda snap: {"endpoints": [ep.to_dict() for ep in sorted(snap, key=_key)]},
        )

    # -- documents ----------------------------------------------------------------------------

    async def put_document(self, name: str, text: str) -> None:
        await self.inner.put_document(name, text)

    async def delete_document(self, name: str) -> None:
        await self.inner.delete_document(name)

    def watch_document(self, name: str) -> AbstractAsyncContextManager[AsyncIterator[str | None]]:
        entry = self._mine["documents"].get(name) or self._stored["documents"].get(name)
        text = entry.get("text") if entry else None
        return self._cached_watch(
            "documents",
            name,
            self.inner.watch_document,
            (text if isinstance(text, str) else None,) if entry else None,
            lambda text: {"text": text},
        )

    # -- the machinery --------------------------------------------------------------------------

    @asynccontextmanager
    async def _cached_watch(
        self,
        kind: str,
        name: str,
        open_inner: Callable[[str], Any],
        stored: tuple[Any] | None,
        to_entry: Callable[[Any], dict[str, Any]],
    ) -> AsyncIterator[AsyncIterator[Any]]:
        box: Latest[Any] = Latest()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, kind, name, open_inner, to_entry, box)
            values = self._serve(kind, name, box, stored)
            try:
                yield values
            finally:
                await values.aclose()
                tg.cancel_scope.cancel()

    async def _pump(
        self,
        kind: str,
        name: str,
        open_inner: Callable[[str], Any],
        to_entry: Callable[[Any], dict[str, Any]],
        box: Latest[Any],
    ) -> None:
        async with open_inner(name) as values:
            async for value in values:
                self._mine[kind][name] = {"at": self._wall(), **to_entry(value)}
                if self._dirty is not None:
                    self._dirty.set()
                box.put(value)

    async def _serve(
        self,
        kind: str,
        name: str,
        box: Latest[Any],
        stored: tuple[Any] | None,
    ) -> AsyncGenerator[Any]:
        first: list[Any] = []
        if stored is not None:
            with anyio.move_on_after(self.cold_start_wait):
                first.append(await box.get())
        sentinel = object()
        last: Any = sentinel
        if stored is not None and not first:
            self._served += 1
            log.warning("registry silent for %s %r: serving the local snapshot", kind, name)
            last = stored[0]
            yield last
        while True:
            value = first.pop() if first else await box.get()
            if last is sentinel or value != last:
                last = value
                yield value

    async def _flush_forever(self) -> None:
        while True:
            assert self._dirty is not None
            await self._dirty.wait()
            await anyio.sleep(self.flush_interval)  # batch a burst of changes into one write
            await self._flush()

    async def _flush(self) -> None:
        if self._dirty is None or not self._dirty.is_set():
            return
        self._dirty = anyio.Event()
        mine = {kind: dict(entries) for kind, entries in self._mine.items()}
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self.file.merge_and_save, mine)
                self._flushes += 1
            except OSError as e:
                self._flush_errors += 1
                self._dirty.set()  # try again after the next interval
                log.warning("could not write registry snapshot %s: %s", self.file.path, e)


def _key(ep: Endpoint) -> str:
    return ep.key
