"""What the networked registries (etcd, ZooKeeper) share to ride out registry outages.

- `Backoff`: capped exponential backoff with jitter, so that a thousand sidecars
  whose registry comes back do not all reconnect in the same millisecond
  (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).
- `Reconciler`: keeps the registry in step with what this process wants
  published. The backend's `sync()` makes one pass (grant a lease or wait for
  a session, write what is missing, delete what was withdrawn); the reconciler
  repeats it with backoff until it succeeds, and again whenever the backend
  kicks it (a lease or session was lost, the registry came back).
- `Latest`: a one-slot mailbox that keeps only the newest value; watchers of
  whole snapshots can skip stale intermediate ones without ever blocking the
  producer.
- `DocumentSource`: the capability of storing and watching named documents
  (the governance rules) next to the endpoints.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import attrs

from sofamesh.registry.base import RegistryError

log = logging.getLogger("sofamesh.registry")

T = TypeVar("T")


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be positive, got {value}")


def _fraction(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attr.name} must be within 0..1, got {value}")


@attrs.frozen
class Backoff:
    """Delay before retry number `attempt` (0-based): `initial * multiplier**attempt`,
    capped at `maximum`, then reduced by a random share of up to `jitter`.

    `jitter=1` is the blog's "full jitter" (anywhere in [0, cap]); the default 0.5
    ("equal jitter") keeps at least half the delay, so a retry loop never spins.
    """

    initial: float = attrs.field(default=0.1, validator=_positive)
    maximum: float = attrs.field(default=5.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    jitter: float = attrs.field(default=0.5, validator=_fraction)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        cap = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return cap * (1 - self.jitter * rand())


WORKSPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_workspace(name: str) -> str:
    """`name` if it can scope a registry's keys: letters, digits, `.`, `_`, `-`."""
    if not WORKSPACE_RE.fullmatch(name):
        raise ValueError(
            f"workspace must be 1-64 letters, digits, '.', '_' or '-' (not first), got {name!r}"
        )
    return name


def parse_hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """`a:2379,b,[::1]:2379` -> [(a, 2379), (b, default_port), (::1, 2379)]."""
    hosts: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in netloc.split(","))):
        host, port = item, default_port
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest.startswith(":"):
                port = _port(rest[1:], item)
        elif item.count(":") == 1:
            host, _, text = item.partition(":")
            port = _port(text, item)
        if not host:
            raise ValueError(f"no host in {item!r}")
        hosts.append((host, port))
    if not hosts:
        raise ValueError("no host given")
    return hosts


def _port(text: str, item: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in {item!r}")
    return int(text)


@attrs.frozen
class NetworkOptions:
    """What an `etcd://` or `zookeeper://` URL says (docs/registries.md lists the keys)."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    workspace: str = "default"
    ttl: float = 10.0  # etcd: lease TTL (`lease`); ZooKeeper: session timeout (`session_timeout`)
    timeout: float = 3.0  # one request to the registry
    snapshot: str | None = None  # the local snapshot file; None: do not keep one
    cold_start_wait: float = 1.0  # how long a watch waits for the registry before the snapshot
    root: str = ""  # etcd: key prefix (default /sofamesh); ZooKeeper: unused

    @property
    def default_snapshot(self) -> str:
        import hashlib  # for network registries only: it loads OpenSSL's digests (0.7 MB)

        digest = hashlib.sha1(repr(self.hosts).encode()).hexdigest()[:8]
        return f"/var/tmp/sofamesh/snapshots/{self.scheme}-{self.workspace}-{digest}.json"


NETWORK_SCHEMES = {"etcd": ("lease", 2379), "zookeeper": ("session_timeout", 2181)}
_NUMBERS = ("timeout", "cold_start_wait")


def parse_network_url(url: str) -> NetworkOptions:
    """The options of an etcd or ZooKeeper registry URL; ValueError naming every problem."""
    parts = urlsplit(url)
    ttl_key, default_port = NETWORK_SCHEMES[parts.scheme]
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    problems: list[str] = []
    known = {"workspace", "snapshot", "root", ttl_key, *_NUMBERS}
    problems += [
        f"unknown option {k!r} (known: {', '.join(sorted(known))})" for k in query if k not in known
    ]
    values: dict[str, Any] = {}
    try:
        values["hosts"] = tuple(parse_hosts(parts.netloc, default_port))
    except ValueError as e:
        problems.append(f"hosts: {e}")
    for key, field in ((ttl_key, "ttl"), *((n, n) for n in _NUMBERS)):
        if key in query:
            try:
                values[field] = float(query[key])
            except ValueError:
                problems.append(f"{key}: not a number: {query[key]!r}")
                continue
            if not 0 < values[field] < 86400:
                problems.append(f"{key}: must be a positive number of seconds, got {query[key]}")
    if "workspace" in query:
        try:
            values["workspace"] = check_workspace(query["workspace"])
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise ValueError(f"{parts.scheme} registry URL: " + "; ".join(problems))
    options = NetworkOptions(parts.scheme, root=query.get("root", ""), **values)
    snapshot = query.get("snapshot", options.default_snapshot)
    return attrs.evolve(options, snapshot=None if snapshot in ("", "none") else snapshot)


class Reconciler:
    """Runs a backend's `sync()` until it succeeds, and again after every `kick()`.

    Create it inside a running event loop (it makes anyio primitives); run
    `run()` in the backend's task group. `sync_now()` lets `publish` make the
    pass itself and report failure to its caller, while the background loop
    keeps retrying.
    """

    def __init__(
        self,
        sync: Callable[[], Awaitable[None]],
        backoff: Backoff,
        *,
        name: str,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._sync = sync
        self._backoff = backoff
        self._rand = rand
        self._name = name
        self._kicked = anyio.Event()
        self._lock = anyio.Lock()
        self.passes = 0
        self.failures = 0
        self.in_sync = anyio.Event()

    def kick(self) -> None:
        """Something changed (a new lease or session, a withdrawal to retry): sync again."""
        self._kicked.set()
        if self.in_sync.is_set():
            self.in_sync = anyio.Event()

    async def sync_now(self) -> None:
        """One pass now; raises RegistryError if it fails (the background loop retries)."""
        try:
            await self._pass()
        except RegistryError:
            self.kick()
            raise

    async def _pass(self) -> None:
        async with self._lock:
            self.passes += 1
            try:
                await self._sync()
            except RegistryError:
                self.failures += 1
                raise

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        attempt = 0
        while True:
            await self._kicked.wait()
            # Re-arm before the pass, so a kick during it triggers another pass.
            self._kicked = anyio.Event()
            try:
                await self._pass()
            except RegistryError as e:
                delay = self._backoff.delay(attempt, self._rand)
                log.warning("%s: registry sync failed (%s); again in %.2fs", self._name, e, delay)
                attempt += 1
                self._kicked.set()
                await anyio.sleep(delay)
                continue
            attempt = 0
            if not self._kicked.is_set():
                self.in_sync.set()


class Latest(Generic[T]):
    """A one-slot mailbox: `put` never blocks and replaces an unread value."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._full = False
        self._event = anyio.Event()

    def put(self, value: T) -> None:
        self._value, self._full = value, True
        self._event.set()

    def get_nowait(self) -> T:
        if not self._full:
            raise anyio.WouldBlock
        value, self._value, self._full = self._value, None, False
        self._event = anyio.Event()
        return value  # type: ignore[return-value]  # _full guarantees a T was put

    async def get(self) -> T:
        while not self._full:
            await self._event.wait()
        return self.get_nowait()


class DocumentSource(Protocol):
    """Named documents (the governance rules) stored in the registry and watched like services."""

    async def put_document(self, name: str, text: str) -> None:
        """Store `text` as document `name` (persistent: it outlives this process)."""
        ...

    async def delete_document(self, name: str) -> None: ...

    def watch_document(self, name: str) -> AbstractAsyncContextManager[AsyncIterator[str | None]]:
        """The document's text now and after each change; None while it does not exist."""
        ...
