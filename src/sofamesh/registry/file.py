"""`file://DIR`: the embedded registry for one machine, shared through a directory.

Layout: ``DIR/services/<quoted service>/<host>_<port>_<protocol>.json``, one
file per endpoint::

    {"endpoint": {...}, "pid": 4242, "pid_start": "123456", "expires": 1764090000.5}

- Writes are atomic: a temporary file in the same directory, then `os.replace`.
- Each entry carries a lease (`expires`, wall clock). The owner rewrites its
  entries every lease/3; an entry past its lease is dead and is ignored (and
  removed by whoever notices).
- An entry whose owning process is gone (its pid no longer runs the process
  that wrote it, checked with the pid's start time from /proc) is dead at once,
  so a SIGKILLed provider vanishes at the next poll, not only at lease expiry.
- One poller per registry follows every watched service (every 0.2 s by default), so
  a change reaches the watchers well within a second without inotify or extra
  dependencies, and the watchers of one service share its scan. A poll costs no trip
  to a worker thread unless something changed: in the event loop it `stat`s each
  watched directory (a write, a rename or an unlink in it moves its mtime), asks
  whether the owners of the entries last read still run (`kill(pid, 0)`), and
  compares the clock with the earliest lease or mark seen; only the services where
  one of those moved are scanned, in one trip. A directory whose mtime was within
  `RACY` of the scan that read it is scanned again at the next poll: the kernel
  stamps mtimes from a coarse clock, so a second change in the same tick would leave
  the same mtime. With nothing watched, the poller sleeps until a watch begins.
- `unpublish` (and closing the registry) first writes a withdrawal mark beside
  the entry, ``<host>_<port>_<protocol>.withdrawn`` (``{"key": ..., "expires": ...}``,
  living one lease), then deletes the entry; publishing deletes the mark. A
  watcher reads the marks after the entries, so an entry its owner removed is
  never seen gone without its mark. An entry deleted by anyone else, or dropped
  because its owner died or its lease ran out, leaves no mark.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

import anyio
import anyio.abc

from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import Shared, Snapshot, follow_shared, watching

MARK = ".withdrawn"

DEFAULT_LEASE = 10.0
DEFAULT_POLL = 0.2
# A directory's mtime this close to the scan that read it may hide a second change in
# the same coarse-clock tick (at most a jiffy, 10 ms at HZ=100): scanned again.
RACY = 0.1


class Seen(NamedTuple):
    """What a scan of one service read, to tell at the next poll whether to scan again."""

    mtime_ns: int  # the directory's, taken before the listing
    racy: bool  # within RACY of the scan: scan again regardless
    owners: frozenset[int]  # the pids of the live entries read
    until: float  # the earliest lease or withdrawal mark read (wall clock)

    def stale(self, mtime_ns: int, now: float) -> bool:
        """True if the directory, an owner or a lease moved since this scan."""
        return (self.racy or mtime_ns != self.mtime_ns or now >= self.until
                or not all(_pid_runs(pid) for pid in self.owners))  # fmt: skip


def _pid_start(pid: int) -> str:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), '' if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return ""
    # The command name (field 2) may contain spaces; it ends at the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mtime_ns(path: Path) -> int:
    """The directory's mtime, -1 if it is not there (a state of its own: created later)."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return -1


def _process_alive(pid: int, start: str) -> bool:
    return _pid_runs(pid) and (not start or _pid_start(pid) in ("", start))


class FileRegistry:
    """A `Registry` on a directory shared by the processes of one host."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        lease: float = DEFAULT_LEASE,
        poll_interval: float = DEFAULT_POLL,
    ) -> None:
        if lease <= 0 or poll_interval <= 0:
            raise ValueError("lease and poll_interval must be positive")
        self.root = Path(root)
        self.lease = lease
        self.poll_interval = poll_interval
        self._mine: dict[str, Endpoint] = {}
        self._pid = os.getpid()
        self._pid_start = _pid_start(self._pid)
        self._writes = itertools.count()
        self._tg: anyio.abc.TaskGroup | None = None
        self._watched: dict[str, Shared] = {}  # one entry per service followed
        self._seen: dict[str, Seen] = {}  # by service: what its last scan read
        self._followed: anyio.Event | None = None  # set when a watch begins

    async def __aenter__(self) -> FileRegistry:
        await anyio.to_thread.run_sync(
            lambda: (self.root / "services").mkdir(parents=True, exist_ok=True)
        )
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._renew_forever)
        self._tg.start_soon(self._poll_forever)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(et, e, tb)
        with anyio.CancelScope(shield=True):
            for ep in list(self._mine.values()):
                await self.unpublish(ep)

    # -- publishing -------------------------------------------------------------------------

    def _dir(self, service: str) -> Path:
        return self.root / "services" / quote(service, safe="")

    def _path(self, ep: Endpoint, suffix: str = ".json") -> Path:
        return self._dir(ep.service) / f"{ep.host}_{ep.port}_{ep.protocol}{suffix}"

    def _write(self, ep: Endpoint) -> None:
        entry = {
            "endpoint": ep.to_dict(),
            "pid": self._pid,
            "pid_start": self._pid_start,
            "expires": time.time() + self.lease,
        }
        self._write_atomically(self._path(ep), entry)

    def _write_atomically(self, path: Path, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own per write: a renewal and a publish of the same entry run in worker
        # threads at once, and a shared name let one's os.replace take the other's file away.
        tmp = path.with_name(f".{path.name}.{self._pid}.{next(self._writes)}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def _publish(self, ep: Endpoint) -> None:
        self._write(ep)
        self._path(ep, MARK).unlink(missing_ok=True)  # after the entry: never neither

    def _withdraw(self, ep: Endpoint) -> None:
        mark = {"key": ep.key, "expires": time.time() + self.lease}
        self._write_atomically(self._path(ep, MARK), mark)  # before the entry goes
        self._path(ep).unlink(missing_ok=True)

    async def publish(self, endpoint: Endpoint) -> None:
        self._mine[endpoint.key] = endpoint
        await anyio.to_thread.run_sync(self._publish, endpoint)

    async def unpublish(self, endpoint: Endpoint) -> None:
        self._mine.pop(endpoint.key, None)
        await anyio.to_thread.run_sync(self._withdraw, endpoint)

    def forget(self, endpoint: Endpoint) -> None:
        """Stop renewing `endpoint` and leave its entry be (a process that takes over this
        one's listeners has published the same entry as its own)."""
        self._mine.pop(endpoint.key, None)

    async def _renew_forever(self) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            for ep in list(self._mine.values()):
                # A full or vanished disk: try again next round; the lease covers us.
                with contextlib.suppress(OSError):
                    await anyio.to_thread.run_sync(self._write, ep)

    # -- watching ---------------------------------------------------------------------------

    def _scan(self, service: str) -> Snapshot:
        return self._scan_seen(service)[0]

    def _scan_seen(self, service: str) -> tuple[Snapshot, Seen]:
        """The service's snapshot, and what the poller compares at the next poll."""
        started_ns = time.time_ns()
        started = started_ns / 1e9
        mtime_ns = _mtime_ns(self._dir(service))
        racy = mtime_ns >= started_ns - RACY * 1e9
        found: set[Endpoint] = set()
        owners: set[int] = set()
        until = float("inf")
        try:
            entries = list(os.scandir(self._dir(service)))
        except FileNotFoundError:  # its mtime is -1 until it is made
            return Snapshot(lease=self.lease), Seen(mtime_ns, racy, frozenset(), until)
        for de in entries:
            if de.name.startswith(".") or not de.name.endswith(".json"):
                continue
            live = self._read_live(Path(de.path), started)
            if live is not None:
                found.add(live[0])
                owners.add(live[1])
                until = min(until, live[2])
        # A second listing: a mark written before an entry went is in it even if the
        # first listing already missed the entry.
        marks = self._marks(service, started)
        until = min([until, *marks.values()])
        seen = Seen(mtime_ns, racy, frozenset(owners), until)
        return Snapshot(found, withdrawn=set(marks), lease=self.lease), seen

    def _marks(self, service: str, now: float) -> dict[str, float]:
        """The withdrawal marks in force: key -> expiry."""
        keys: dict[str, float] = {}
        with contextlib.suppress(FileNotFoundError):
            for de in os.scandir(self._dir(service)):
                if de.name.endswith(MARK) and not de.name.startswith("."):
                    mark = self._read_mark(Path(de.path), now)
                    if mark is not None:
                        keys[mark[0]] = mark[1]
        return keys

    def _read_mark(self, path: Path, now: float) -> tuple[str, float] | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            key, expires = str(data["key"]), float(data["expires"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not a mark of ours
        if expires < now:
            path.unlink(missing_ok=True)
            return None
        return key, expires

    def _read_live(self, path: Path, now: float) -> tuple[Endpoint, int, float] | None:
        """The entry's endpoint, owner's pid and lease expiry, if it is live."""
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            ep = Endpoint.from_dict(data["endpoint"])
            pid, expires = int(data["pid"]), float(data["expires"])
            dead = not _process_alive(pid, str(data.get("pid_start", "")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # half-written by a foreign tool or corrupt: not an endpoint
        if expires < now or dead:
            path.unlink(missing_ok=True)
            return None
        return ep, pid, expires

    def watch(self, service: str) -> AbstractAsyncContextManager[AsyncIterator[Snapshot]]:
        return watching(self._follow(service))

    async def _follow(self, service: str) -> AsyncGenerator[Snapshot, None]:
        """The service's snapshots from the registry's one poller, shared by its watchers."""
        shared = self._watched.get(service)
        if shared is None:
            shared = self._watched[service] = Shared()
            if self._followed is not None:
                self._followed.set()  # the poller has something to follow now
            try:
                self._publish_found(await anyio.to_thread.run_sync(self._scan_all, [service]))
            except BaseException:  # cancelled before following: nobody holds it
                if not shared.watchers and self._watched.get(service) is shared:
                    del self._watched[service]
                raise
        async with aclosing(follow_shared(self._watched, service, shared)) as snapshots:
            async for snap in snapshots:
                yield snap

    async def _poll_forever(self) -> None:
        """Every `poll_interval`, scan the watched services whose directory, owners or
        leases moved, in one trip to a thread; with none watched, wait for a watch."""
        while True:
            if not self._watched:
                self._followed = anyio.Event()
                await self._followed.wait()
            await anyio.sleep(self.poll_interval)
            due = self._stale(self._watched)
            if due:
                self._publish_found(await anyio.to_thread.run_sync(self._scan_all, due))

    def _stale(self, services: Iterable[str]) -> list[str]:
        """The services to scan again (a `stat` each, and `kill(pid, 0)` per owner)."""
        now, seen = time.time(), self._seen
        for service in list(seen):
            if service not in self._watched:
                del seen[service]  # no one follows it any more
        due = []
        for service in services:
            last = seen.get(service)
            if last is None or last.stale(_mtime_ns(self._dir(service)), now):
                due.append(service)
        return due

    def _publish_found(self, found: dict[str, tuple[Snapshot, Seen]]) -> None:
        for service, (snap, seen) in found.items():
            shared = self._watched.get(service)
            if shared is not None:
                shared.publish(snap)
                self._seen[service] = seen

    def _scan_all(self, services: list[str]) -> dict[str, tuple[Snapshot, Seen]]:
        found = {}
        for service in services:
            with contextlib.suppress(OSError):  # unreadable right now: keep what we knew
                found[service] = self._scan_seen(service)
        return found

    async def list_services(self) -> list[str]:
        def scan() -> list[str]:
            base = self.root / "services"
            names = [d.name for d in os.scandir(base) if d.is_dir()] if base.exists() else []
            return sorted(unquote(n) for n in names if self._scan(unquote(n)))

        return await anyio.to_thread.run_sync(scan)
