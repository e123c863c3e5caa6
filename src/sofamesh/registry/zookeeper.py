"""`zookeeper://host:2181[,host:2181...]`: Dubbo's ZooKeeper layout, shared with Dubbo apps.

Layout. The workspace is Dubbo's registry `group`, the root node: `/dubbo` for
the `default` workspace, `/<workspace>` otherwise (a Dubbo app with
`dubbo.registry.group=<workspace>` shares it)::

    /<root>/<service>/providers/<URL-encoded provider URL>   ephemeral, one per endpoint
    /<root>/<service>/consumers/<URL-encoded consumer URL>   ephemeral, one per watching process
    /<root>/<service>/routers, /<root>/<service>/configurators   persistent, made as Dubbo does
    /<root>/<service>/sofamesh-withdrawn/<expiry>-<key>      withdrawal marks (zookeeper_marks.py)
    /<root>/config/sofamesh/<name>                           a governance document (node data)

`<service>` is the interface of a Dubbo service key (`group/interface:version`: the
version and group are URL parameters, and a watch keeps the providers of its own), else
the service name; it and node names are encoded as Dubbo does (Java's URLEncoder); the
provider URL maps to an `Endpoint` as `dubbo_url.py` documents. So Dubbo
consumers see sofamesh providers and sofamesh sees Dubbo providers.

Sessions. An endpoint lives as long as our session: one that dies without
unpublishing disappears after `session_timeout` (10 s by default, negotiated
within the server's min/max). kazoo reconnects by itself; when it comes back
with a *new* session (the old one expired during an outage), the `Reconciler`
creates our ephemeral nodes again, with backoff and jitter while it fails.

Watching (zookeeper_watches.py): read the providers' children with a watch; each watch event (or a
reconnection) triggers a new read of the whole list. ZooKeeper watches fire
once, and the read that re-arms the watch sees every change made before it,
so none is lost; a reconnection within the session re-arms watches with the
last zxid seen (kazoo's SetWatches). Errors never empty a snapshot.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import (
    AsyncExitStack,
    suppress,
)
from functools import partial
from types import TracebackType

import anyio
import anyio.abc
from kazoo.exceptions import NodeExistsError, NoNodeError

from sofamesh.endpoint import Endpoint
from sofamesh.registry.base import RegistryError
from sofamesh.registry.dubbo_url import (
    endpoint_to_url,
)
from sofamesh.registry.resilient import Backoff, Reconciler, check_workspace
from sofamesh.registry.zookeeper_bridge import KazooBridge
from sofamesh.registry.zookeeper_layout import (
    CATEGORIES,
    ZooKeeperPaths,
    local_address,
)
from sofamesh.registry.zookeeper_marks import WithdrawalMarks
from sofamesh.registry.zookeeper_watches import CONSUMER, Watches

log = logging.getLogger("sofamesh.registry.zookeeper")

PIPELINE = 64  # node creations in flight at once (one session pipelines them in order)


class ZooKeeperRegistry(Watches):
    """A `Registry` (and `DocumentSource`) on ZooKeeper, in Dubbo's layout."""

    def __init__(
        self,
        hosts: Sequence[tuple[str, int]],
        *,
        workspace: str = "default",
        session_timeout: float = 10.0,
        timeout: float = 3.0,
        app: str = "sofamesh",
        register_consumers: bool = True,
        backoff: Backoff | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        check_workspace(workspace)
        if session_timeout <= 0 or timeout <= 0:
            raise ValueError("session_timeout and timeout must be positive")
        self.hosts = tuple(hosts)
        self.workspace = workspace
        self.paths = ZooKeeperPaths(workspace)
        self.session_timeout = session_timeout
        self.timeout = timeout
        self.app = app
        self.register_consumers = register_consumers
        self.backoff = backoff or Backoff()
        self._rand = rand
        self._wanted: dict[str, str] = {}  # what we want to exist: key -> ephemeral node path
        self._withdrawn: dict[str, str] = {}  # to delete: key -> path
        self._created: dict[str, str] = {}  # created in the current session: key -> path
        self._consumers: dict[str, int] = {}  # service -> watches open
        self._followers: set[anyio.Event] = set()
        self._dirs: set[str] = set()  # service directories known to exist
        self._local_host = "127.0.0.1"
        self._stack = AsyncExitStack()
        self._zk: KazooBridge | None = None
        self._marks: WithdrawalMarks | None = None
        self._reconciler: Reconciler | None = None
        self.sessions = 0

    async def __aenter__(self) -> ZooKeeperRegistry:
        self._local_host = await anyio.to_thread.run_sync(local_address, self.hosts[0])
        async with AsyncExitStack() as stack:
            self._reconciler = Reconciler(
                self._sync,
                self.backoff,
                name="zookeeper",
                rand=self._rand,
            )
            zk = self._zk = KazooBridge(
                ",".join(f"{h}:{p}" for h, p in self.hosts),
                session_timeout=self.session_timeout,
                timeout=self.timeout,
                backoff=self.backoff,
                on_connected=self._connected,
            )
            self._marks = WithdrawalMarks(zk, self.session_timeout)
            stack.push_async_callback(zk.aclose)
            tg = await stack.enter_async_context(anyio.create_task_group())
            await tg.start(zk.run)
            await tg.start(self._reconciler.run)
            stack.callback(tg.cancel_scope.cancel)
            stack.push_async_callback(self._mark_on_close)  # while the session still lives
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(et, e, tb)

    @property
    def zk(self) -> KazooBridge:
        if self._zk is None:
            raise RuntimeError("ZooKeeperRegistry used outside its 'async with' block")
        return self._zk

    @property
    def marks(self) -> WithdrawalMarks:
        if self._marks is None:
            raise RuntimeError("ZooKeeperRegistry used outside its 'async with' block")
        return self._marks

    async def _mark_on_close(self) -> None:
        """Closing withdraws: leave the marks of our providers before the session ends."""
        providers = [(k, p) for k, p in self._created.items() if not k.startswith(CONSUMER)]
        with anyio.CancelScope(shield=True), anyio.move_on_after(min(self.timeout, 2.0)):
            try:
                await self.marks.mark_all(providers)
            except RegistryError as e:
                log.warning("zookeeper: could not mark our providers withdrawn: %s", e)

    def _connected(self, new_session: bool) -> None:
        if new_session:
            self.sessions += 1
            self._created.clear()  # a new session holds none of our ephemeral nodes
            assert self._reconciler is not None
            self._reconciler.kick()
        self._wake_followers()

    def _wake_followers(self) -> None:
        for event in self._followers:
            event.set()

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, endpoint: Endpoint) -> None:
        """Create `endpoint`'s provider node. On RegistryError it stays wanted: it is
        created as soon as ZooKeeper answers (call `unpublish` to drop it)."""
        await self.publish_many([endpoint])

    async def publish_many(self, endpoints: Sequence[Endpoint]) -> None:
        """`publish` for many endpoints, in one pass with requests pipelined."""
        for ep in endpoints:
            url = endpoint_to_url(ep, timestamp_ms=int(time.time() * 1000), pid=os.getpid())
            self._want(ep.key, self.paths.node(ep.service, "providers", url))
        await self.reconciler.sync_now()

    async def unpublish(self, endpoint: Endpoint) -> None:
        """Delete `endpoint`'s node; if ZooKeeper cannot be reached, the deletion is
        retried in the background (and the session bounds how long it can linger)."""
        if self._unwant(endpoint.key):
            try:
                await self.reconciler.sync_now()
            except RegistryError as e:
                log.warning(
                    "zookeeper: could not delete %s now (%s); retrying later", endpoint.address, e
                )

    def forget(self, endpoint: Endpoint) -> None:
        """Stop keeping `endpoint`'s node and leave no withdrawal mark for it: the node goes
        with our session, while the process that took over our listeners has its own."""
        self._wanted.pop(endpoint.key, None)
        self._created.pop(endpoint.key, None)

    @property
    def reconciler(self) -> Reconciler:
        if self._reconciler is None:
            raise RuntimeError("ZooKeeperRegistry used outside its 'async with' block")
        return self._reconciler

    def _want(self, key: str, path: str) -> None:
        self._withdrawn.pop(key, None)
        self._wanted[key] = path

    def _unwant(self, key: str) -> bool:
        path = self._wanted.pop(key, None) or self._created.get(key)
        if path is not None:
            self._withdrawn[key] = path
        return path is not None

    async def _sync(self) -> None:
        """One pass: delete withdrawn nodes, create wanted ones missing from this session."""
        for key, path in list(self._withdrawn.items()):
            if key.startswith(CONSUMER):
                await self._delete(path)
            else:
                await self.marks.withdraw(key, path)
            if self._created.get(key) == path:
                del self._created[key]
            if self._withdrawn.get(key) == path:
                del self._withdrawn[key]
        todo = [(k, p) for k, p in self._wanted.items() if self._created.get(k) != p]
        dirs = {path.rsplit("/", 2)[0] for _key, path in todo} - self._dirs
        await self._pipelined([partial(self._ensure_dirs, d) for d in dirs])
        await self._pipelined([partial(self._create_wanted, k, p) for k, p in todo])

    async def _pipelined(self, calls: list[Callable[[], Awaitable[None]]]) -> None:
        """Run `calls` with up to PIPELINE in flight; the first RegistryError, after all ran."""
        failures: list[RegistryError] = []
        limiter = anyio.CapacityLimiter(PIPELINE)

        async def run(call: Callable[[], Awaitable[None]]) -> None:
            async with limiter:
                try:
                    await call()
                except RegistryError as e:
                    failures.append(e)

        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(run, call)
        if failures:
            raise failures[0]

    async def _ensure_dirs(self, service_dir: str) -> None:
        """Make a service's persistent directories, as Dubbo does (plain creates, one
        round trip each: cheaper than kazoo's ensure_path, which checks every level)."""
        root = service_dir.rsplit("/", 1)[0]
        if root not in self._dirs:
            await self.zk.call("ensure_path", root)
            self._dirs.add(root)
        for path in (service_dir, *(f"{service_dir}/{c}" for c in CATEGORIES)):
            with suppress(NodeExistsError):
                await self.zk.call("create", path, b"")
        self._dirs.add(service_dir)

    async def _create_wanted(self, key: str, path: str) -> None:
        old = self._created.get(key)
        if old is not None:
            await self._delete(old)  # metadata changed: the URL, so the node name, did too
        await self._create_ephemeral(path)
        if self._wanted.get(key) == path:
            self._created[key] = path

    async def _create_ephemeral(self, path: str) -> None:
        try:
            await self.zk.call("create", path, b"", ephemeral=True)
        except NoNodeError:
            self._dirs.discard(path.rsplit("/", 2)[0])  # removed by someone: make them again
            raise RegistryError(f"zookeeper: the parent of {path} vanished") from None
        except NodeExistsError:
            # Ours from this session (an answer we missed), or left by a session that
            # ZooKeeper has not expired yet: that one would vanish with it, so replace it.
            stat = await self.zk.call("exists", path)
            if stat is not None and stat.ephemeralOwner != self.zk.session_id:
                await self._delete(path)
                await self.zk.call("create", path, b"", ephemeral=True)

    async def _delete(self, path: str) -> None:
        with suppress(NoNodeError):
            await self.zk.call("delete", path)

    # -- documents (governance rules) ---------------------------------------------------------

    async def put_document(self, name: str, text: str) -> None:
        path = self.paths.document(name)
        try:
            await self.zk.call("set", path, text.encode())
        except NoNodeError:
            try:
                await self.zk.call("create", path, text.encode(), makepath=True)
            except NodeExistsError:  # created meanwhile by someone else: ours is newer
                await self.zk.call("set", path, text.encode())

    async def delete_document(self, name: str) -> None:
        await self._delete(self.paths.document(name))
