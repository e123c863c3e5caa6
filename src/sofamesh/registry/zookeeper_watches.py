"""What a ZooKeeper registry follows: a service's providers (as snapshots, with their
withdrawal marks) and a governance document, each through ZooKeeper's one-shot watches,
re-read after every event or reconnection; this process shown under `consumers/` while it
watches, as Dubbo consumers are (a part of `ZooKeeperRegistry`, zookeeper.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from kazoo.exceptions import NoNodeError

from sofamesh.registry.base import RegistryError, Snapshot, watching
from sofamesh.registry.dubbo_url import consumer_url, provider_for
from sofamesh.registry.resilient import Backoff, Reconciler
from sofamesh.registry.zookeeper_bridge import KazooBridge
from sofamesh.registry.zookeeper_layout import (
    ZooKeeperPaths,
    decode_providers,
    document_text,
    service_name,
)
from sofamesh.registry.zookeeper_marks import WithdrawalMarks

log = logging.getLogger("sofamesh.registry.zookeeper")

CONSUMER = "consumer|"  # the prefix of our consumer nodes' keys (providers' are Endpoint.key)


class Watches:
    """The reading side of `ZooKeeperRegistry`."""

    paths: ZooKeeperPaths
    app: str
    register_consumers: bool
    session_timeout: float
    backoff: Backoff
    _rand: Callable[[], float]
    _consumers: dict[str, int]  # service -> watches open
    _followers: set[anyio.Event]  # set on every reconnection: read again
    _local_host: str

    if TYPE_CHECKING:  # the registry's session, its marks and its reconciler

        @property
        def zk(self) -> KazooBridge: ...
        @property
        def marks(self) -> WithdrawalMarks: ...
        @property
        def reconciler(self) -> Reconciler: ...
        def _want(self, key: str, path: str) -> None: ...
        def _unwant(self, key: str) -> bool: ...

    @asynccontextmanager
    async def watch(self, service: str) -> AsyncIterator[AsyncIterator[Snapshot]]:
        self._register_consumer(service)
        try:
            async with watching(self._follow(service)) as snapshots:
                yield snapshots
        finally:
            self._unregister_consumer(service)

    def _register_consumer(self, service: str) -> None:
        """Show this process under `consumers/` as Dubbo consumers do (in the background:
        a watch must not wait for it, nor fail because of it)."""
        self._consumers[service] = self._consumers.get(service, 0) + 1
        if not self.register_consumers or self._consumers[service] > 1:
            return
        url = consumer_url(
            service,
            self._local_host,
            app=self.app,
            timestamp_ms=int(time.time() * 1000),
            pid=os.getpid(),
        )
        self._want(f"{CONSUMER}{service}", self.paths.node(service, "consumers", url))
        self.reconciler.kick()

    def _unregister_consumer(self, service: str) -> None:
        self._consumers[service] -= 1
        if self._consumers[service] == 0:
            del self._consumers[service]
            if self.register_consumers and self._unwant(f"{CONSUMER}{service}"):
                self.reconciler.kick()

    async def _follow(self, service: str) -> AsyncGenerator[Snapshot]:
        path = self.paths.category(service, "providers")
        last: Snapshot | None = None
        async with aclosing(self._follow_node(path, "get_children")) as values:
            async for children in values:
                found = decode_providers(children or [])  # type: ignore[arg-type]
                # The interface's node holds every version and group: keep this key's.
                listed = frozenset(e for ep in found if (e := provider_for(ep, service)))
                snap = Snapshot(
                    listed, withdrawn=await self._withdrawn_in(service), lease=self.session_timeout
                )
                if snap != last:
                    last = snap
                    yield snap

    async def _withdrawn_in(self, service: str) -> set[str]:
        """The marks, read after the providers: a node its owner deleted has its mark."""
        try:
            return await self.marks.read(self.paths.service(service))
        except RegistryError as e:  # without them a removal may be held: the safe side
            log.info("zookeeper: reading the withdrawal marks of %s failed (%s)", service, e)
            return set()

    async def _follow_node(self, path: str, method: str) -> AsyncGenerator[object]:
        """`method`'s answer for `path` (None while it does not exist), re-read after each
        watch event or reconnection, until the caller stops."""
        attempt = 0
        while True:
            changed = anyio.Event()
            self._followers.add(changed)
            try:
                value = await self._read_watched(path, method, changed)
            except RegistryError as e:
                delay = self.backoff.delay(attempt, self._rand)
                attempt += 1
                log.info("zookeeper: reading %s failed (%s); again in %.2fs", path, e, delay)
                with anyio.move_on_after(delay):
                    await changed.wait()  # or as soon as we are connected again
                self._followers.discard(changed)
                continue
            attempt = 0
            try:
                yield value
                await changed.wait()
            finally:
                self._followers.discard(changed)

    async def _read_watched(self, path: str, method: str, changed: anyio.Event) -> object:
        try:
            return await self.zk.call(method, path, watch=self.zk.watcher(changed))
        except NoNodeError:
            # Watch for the node's creation instead; if it appeared meanwhile, read again.
            if await self.zk.call("exists", path, watch=self.zk.watcher(changed)) is not None:
                changed.set()
            return None

    async def list_services(self) -> list[str]:
        try:
            names = await self.zk.call("get_children", self.paths.root)
        except NoNodeError:
            return []
        found: set[str] = set()
        for name in names:  # one read per interface: fine for catalogs and admin pages
            path = f"{self.paths.root}/{name}/providers"
            try:
                providers = await self.zk.call("get_children", path)
            except NoNodeError:
                continue  # `config`, or a service node with no providers yet
            # An interface's node holds every version and group (and Bolt's
            # `interface:version`): list each as the mesh names it, as `watch` takes it.
            found.update(service_name(ep) for ep in decode_providers(providers))
        return sorted(found)

    def watch_document(self, name: str) -> AbstractAsyncContextManager[AsyncIterator[str | None]]:
        return watching(self._follow_document(name))

    async def _follow_document(self, name: str) -> AsyncGenerator[str | None]:
        last: str | None = None
        first = True
        async with aclosing(self._follow_node(self.paths.document(name), "get")) as values:
            async for value in values:
                text = document_text(value)
                if first or text != last:
                    first, last = False, text
                    yield text
