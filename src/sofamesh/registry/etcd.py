"""`etcd://host:2379[,host:2379...]`: endpoints in etcd v3, kept alive by a lease.

Key layout. Every key lives under its workspace, so several teams or
environments share one etcd without seeing each other::

    /sofamesh/<workspace>/services/<service>/<protocol>/<host>:<port>  endpoint JSON (leased)
    /sofamesh/<workspace>/services/<service>/!withdrawn/<protocol>/<host>:<port>
                                                   withdrawal mark {"withdrawn": key} (leased)
    /sofamesh/<workspace>/rules/<name>                                 governance document

`<service>` and `<name>` are percent-encoded (only RFC 3986 unreserved
characters stay), so service `a/b` never shares a prefix with service `a`. The
value is `Endpoint.to_dict()` as JSON (UTF-8).

Publishing: one lease per registry instance (`lease_ttl` seconds, 10 by
default), renewed every third of its TTL. If etcd answers that the lease is
gone (it expired while we could not reach etcd), a new lease is granted and
every endpoint written again; the `Reconciler` retries with backoff and jitter
until etcd takes them. Closing revokes the lease, which deletes our keys at
once; a process that dies without closing disappears when its lease expires.

Withdrawals: `unpublish` deletes the endpoint's key and puts its withdrawal mark
in one transaction, so a watcher sees both in the same reply; closing puts the
marks of every endpoint before revoking the lease. A mark lives under a lease of
its own (`lease_ttl`, never renewed nor revoked), so it outlives the owner by one
lease and then goes by itself; publishing again deletes it. `!` is reserved in
a percent-encoded segment, so the marks never clash with a protocol's keys.

Watching (etcd_watches.py): one watch per registry follows every service: read the services
prefix once (at revision R), then watch it from R + 1; each watched service
gets the snapshot of its own keys. Each watch reply applies its events in
revision order and gives each watched service whose keys changed one new
snapshot. A broken watch is opened again from the revision after the last event
seen, so no change is missed or replayed; if etcd has compacted that revision
away, the prefix is read again. Errors never empty a snapshot.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from types import TracebackType

import anyio
import anyio.abc

from sofamesh.endpoint import Endpoint
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.registry.base import RegistryError, Shared
from sofamesh.registry.etcd_client import EtcdClient
from sofamesh.registry.etcd_keys import (
    DEFAULT_ROOT,
    EtcdKeys,
    delete_op,
    encode_endpoint,
    encode_mark,
    put_op,
)
from sofamesh.registry.etcd_watches import Watches
from sofamesh.registry.etcd_wire import GRPC_NOT_FOUND, EtcdError
from sofamesh.registry.resilient import Backoff, Reconciler, check_workspace

log = logging.getLogger("sofamesh.registry.etcd")

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops


class EtcdRegistry(Watches):
    """A `Registry` (and `DocumentSource`) on etcd v3's JSON gateway."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        workspace: str = "default",
        root: str = DEFAULT_ROOT,
        lease_ttl: int = 10,
        timeout: float = 3.0,
        backoff: Backoff | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        check_workspace(workspace)
        if lease_ttl < 1 or timeout <= 0:
            raise ValueError("lease_ttl must be at least 1 s and timeout positive")
        self.endpoints = tuple(endpoints)
        self.workspace = workspace
        self.keys = EtcdKeys(workspace, root)
        self.lease_ttl = lease_ttl
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self._rand = rand
        self._wanted: dict[str, Endpoint] = {}  # by Endpoint.key
        self._withdrawn: dict[str, Endpoint] = {}
        self._written: dict[str, Endpoint] = {}  # confirmed under the current lease
        self._lease: int | None = None
        self._granted_ttl = lease_ttl
        self._stack = AsyncExitStack()
        self._client: EtcdClient | None = None
        self._reconciler: Reconciler | None = None
        self.leases_granted = 0
        self.watch_breaks = 0
        self._group: anyio.abc.TaskGroup | None = None
        self._watched: dict[str, Shared] = {}  # the services followed, by name
        self._services: dict[str, dict[bytes, Endpoint | str]] | None = None  # as last read
        self._follower: anyio.Event | None = None  # set once the one watch has started

    async def __aenter__(self) -> EtcdRegistry:
        async with AsyncExitStack() as stack:
            pool = await stack.enter_async_context(Http1Pool(connect_timeout=self.timeout))
            self._client = EtcdClient(self.endpoints, pool, timeout=self.timeout)
            self._reconciler = Reconciler(self._sync, self.backoff, name="etcd", rand=self._rand)
            tg = await stack.enter_async_context(anyio.create_task_group())
            self._group = tg
            await tg.start(self._reconciler.run)
            tg.start_soon(self._keep_alive_forever)
            stack.push_async_callback(self._revoke)
            stack.callback(tg.cancel_scope.cancel)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(et, e, tb)

    @property
    def client(self) -> EtcdClient:
        if self._client is None:
            raise RuntimeError("EtcdRegistry used outside its 'async with' block")
        return self._client

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, endpoint: Endpoint) -> None:
        """Write `endpoint` under our lease. On RegistryError it stays wanted: the
        registry publishes it as soon as etcd answers (call `unpublish` to drop it)."""
        await self.publish_many([endpoint])

    async def publish_many(self, endpoints: Sequence[Endpoint]) -> None:
        """`publish` for many endpoints, written in transactions of up to 128 keys."""
        assert self._reconciler is not None, "EtcdRegistry used outside its 'async with' block"
        for ep in endpoints:
            self._withdrawn.pop(ep.key, None)
            self._wanted[ep.key] = ep
        await self._reconciler.sync_now()

    async def unpublish(self, endpoint: Endpoint) -> None:
        """Delete `endpoint`; if etcd cannot be reached, the deletion is retried in the
        background (and the lease bounds how long it can linger)."""
        assert self._reconciler is not None, "EtcdRegistry used outside its 'async with' block"
        self._wanted.pop(endpoint.key, None)
        self._withdrawn[endpoint.key] = endpoint
        try:
            await self._reconciler.sync_now()
        except RegistryError as e:
            log.warning("unpublish %s: %s (retrying in the background)", endpoint.address, e)

    def forget(self, endpoint: Endpoint) -> None:
        """Stop keeping `endpoint` and leave its key be: closing neither marks it withdrawn
        nor deletes it (a process that took over our listeners put the same key under its
        own lease, which our revoke does not touch)."""
        self._wanted.pop(endpoint.key, None)
        self._written.pop(endpoint.key, None)

    async def _sync(self) -> None:
        """One pass: delete what was withdrawn, write what is wanted and not yet written."""
        withdrawn = list(self._withdrawn.items())
        if withdrawn:
            await self._mark_withdrawn([ep for _key, ep in withdrawn], delete=True)
        for key, ep in withdrawn:
            self._written.pop(key, None)
            if self._withdrawn.get(key) is ep:
                del self._withdrawn[key]
        pending = [ep for key, ep in self._wanted.items() if self._written.get(key) != ep]
        if not pending:
            return
        lease = self._lease if self._lease is not None else await self._grant()
        per_txn = MAX_TXN_OPS // 2  # a put and a mark's deletion each
        for i in range(0, len(pending), per_txn):
            await self._put_all(pending[i : i + per_txn], lease)

    async def _grant(self) -> int:
        lease, ttl = await self.client.lease_grant(self.lease_ttl)
        self._lease, self._granted_ttl = lease, max(ttl, 1)
        self._written.clear()
        self.leases_granted += 1
        return lease

    async def _mark_withdrawn(self, eps: list[Endpoint], *, delete: bool) -> None:
        """Put the withdrawal marks of `eps` (under a lease of their own), deleting their
        keys in the same transactions if `delete`."""
        lease, _ttl = await self.client.lease_grant(self.lease_ttl)
        per_txn = MAX_TXN_OPS // 2
        for i in range(0, len(eps), per_txn):
            ops = []
            for ep in eps[i : i + per_txn]:
                ops.append(put_op(self.keys.withdrawal(ep), encode_mark(ep), lease))
                if delete:
                    ops.append(delete_op(self.keys.endpoint(ep)))
            await self.client.call("/v3/kv/txn", {"success": ops})

    async def _put_all(self, eps: list[Endpoint], lease: int) -> None:
        ops = [put_op(self.keys.endpoint(ep), encode_endpoint(ep), lease) for ep in eps]
        ops += [delete_op(self.keys.withdrawal(ep)) for ep in eps]  # published again
        try:
            await self.client.call("/v3/kv/txn", {"success": ops})
        except EtcdError as e:
            if e.code == GRPC_NOT_FOUND:  # "requested lease not found": it expired meanwhile
                self._lose_lease(lease)
            raise
        for ep in eps:
            self._written[ep.key] = ep

    def _lose_lease(self, lease: int) -> None:
        if self._lease == lease:
            log.warning("etcd lease %x is gone; publishing again under a new one", lease)
            self._lease = None
            self._written.clear()
            assert self._reconciler is not None
            self._reconciler.kick()

    async def _keep_alive_forever(self) -> None:
        attempt = 0
        while True:
            period = self._granted_ttl / 3
            if attempt:  # etcd did not answer: try again sooner, with backoff
                period = min(period, self.backoff.delay(attempt - 1, self._rand))
            await anyio.sleep(period)
            lease = self._lease
            if lease is None:
                attempt = 0
                continue
            try:
                ttl = await self.client.lease_keepalive(lease)
            except RegistryError as e:
                log.debug("etcd keepalive failed: %s", e)
                attempt += 1
                continue
            attempt = 0
            if ttl <= 0:
                self._lose_lease(lease)

    async def _revoke(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(min(self.timeout, 2.0)):
            if self._written:  # closing withdraws: marks first, then the keys go
                try:
                    await self._mark_withdrawn(list(self._written.values()), delete=False)
                except RegistryError as e:  # our keys still go: watchers hold them a lease
                    log.warning("could not mark our endpoints withdrawn in etcd: %s", e)
            try:
                await self.client.lease_revoke(lease)
            except RegistryError as e:
                log.warning("could not revoke etcd lease (%s); our keys expire with it", e)

    # -- documents (governance rules) ---------------------------------------------------------

    async def put_document(self, name: str, text: str) -> None:
        await self.client.put(self.keys.rule(name), text.encode())

    async def delete_document(self, name: str) -> None:
        await self.client.delete(self.keys.rule(name))
