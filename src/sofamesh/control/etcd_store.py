"""The store on etcd: every control-plane replica pointed at it shares one state (HA).

Keys live under `/sofamesh/control/` (`?root=` changes it). `create` is one etcd
transaction (compare the key's create revision to 0, then put), so replicas
racing to allocate a rules version or add a user never both win. The client is
the registry's (`registry/etcd_client.py`): failover across the listed members,
every failure as `RegistryError`, which becomes `StoreUnavailable` here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from sofamesh.control.store import Items, StoreUnavailable
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.registry.base import RegistryError
from sofamesh.registry.etcd_client import EtcdClient
from sofamesh.registry.etcd_wire import b64, put_request
from sofamesh.registry.resilient import parse_hosts

T = TypeVar("T")


class EtcdStore:
    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.root = query.get("root", "/sofamesh/control").rstrip("/") + "/"
        self._hosts = list(parse_hosts(parts.netloc, 2379))
        self._timeout = timeout
        self._stack = AsyncExitStack()
        self._client: EtcdClient | None = None

    async def __aenter__(self) -> EtcdStore:
        pool = await self._stack.enter_async_context(Http1Pool(connect_timeout=self._timeout))
        self._client = EtcdClient(self._hosts, pool, timeout=self._timeout)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(et, e, tb)

    @property
    def client(self) -> EtcdClient:
        assert self._client is not None, "use `async with EtcdStore(...)`"
        return self._client

    def _key(self, key: str) -> bytes:
        return (self.root + key).encode()

    async def _guard(self, op: Awaitable[T]) -> T:
        try:
            return await op
        except RegistryError as e:
            raise StoreUnavailable(f"etcd: {e}") from e

    async def get(self, key: str) -> str | None:
        _rev, kv = await self._guard(self.client.get(self._key(key)))
        return None if kv is None else kv.value.decode()

    async def list(self, prefix: str) -> list[tuple[str, str]]:
        _rev, kvs = await self._guard(self.client.get_prefix(self._key(prefix)))
        strip = len(self.root)
        return sorted((kv.key.decode()[strip:], kv.value.decode()) for kv in kvs)

    async def put(self, key: str, value: str) -> None:
        await self._guard(self.client.put(self._key(key), value.encode()))

    async def put_many(self, items: Items) -> None:
        # One transaction per 100 puts (etcd refuses more than 128 operations in one).
        for start in range(0, len(items), 100):
            ops = [
                {"request_put": put_request(self._key(k), v.encode())}
                for k, v in items[start : start + 100]
            ]
            await self._guard(self.client.call("/v3/kv/txn", {"success": ops}))

    async def create(self, key: str, value: str) -> bool:
        k = self._key(key)
        body = {
            "compare": [
                {"key": b64(k), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}
            ],
            "success": [{"request_put": put_request(k, value.encode())}],
        }
        reply = await self._guard(self.client.call("/v3/kv/txn", body))
        return bool(reply.get("succeeded"))

    async def delete(self, key: str) -> bool:
        reply = await self._guard(
            self.client.call("/v3/kv/deleterange", {"key": b64(self._key(key))})
        )
        return int(reply.get("deleted", 0)) > 0
