"""Withdrawal marks in ZooKeeper: how a watcher tells an owner's unpublish from a lost session.

Layout, beside Dubbo's categories (Dubbo reads only the categories it subscribes
to, so it never sees them)::

    /<root>/<service>/sofamesh-withdrawn/<expires ms>-<URL-encoded Endpoint.key>   persistent

- `unpublish` creates the mark and deletes the provider node in one
  transaction (ZooKeeper's multi), so a watcher that reads the providers and
  then the marks never sees the node gone without its mark.
- Closing the registry creates the marks of its providers before it closes the
  session (which deletes the nodes).
- A mark lives a session timeout, the lease of a ZooKeeper provider. ZooKeeper
  only has TTL nodes when the server enables extended types, so the expiry is
  in the name and whoever reads an expired mark deletes it.
- A provider whose session expired (its process died or was cut off) leaves no mark.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import suppress

from kazoo.exceptions import NodeExistsError, NoNodeError

from sofamesh.registry.base import RegistryError
from sofamesh.registry.dubbo_url import java_url_decode, java_url_encode
from sofamesh.registry.zookeeper_bridge import KazooBridge

log = logging.getLogger("sofamesh.registry.zookeeper")

MARKS = "sofamesh-withdrawn"


def marks_dir(provider_path: str) -> str:
    """The marks' directory of the service a provider node (`.../providers/<url>`) is in."""
    return f"{provider_path.rsplit('/', 2)[0]}/{MARKS}"


def mark_name(key: str, expires: float) -> str:
    return f"{int(expires * 1000)}-{java_url_encode(key)}"


def parse_mark(name: str) -> tuple[str, float] | None:
    """(key, expires) of a mark's node name, or None if it is not one."""
    expires, sep, key = name.partition("-")
    if not sep or not expires.isdigit() or not key:
        return None
    return java_url_decode(key), int(expires) / 1000


class WithdrawalMarks:
    """Writes and reads the marks of one registry's session."""

    def __init__(self, zk: KazooBridge, lease: float) -> None:
        self.zk = zk
        self.lease = lease
        self._dirs: set[str] = set()

    async def withdraw(self, key: str, path: str) -> None:
        """Delete the provider node at `path` and leave its mark, atomically."""
        mark = await self._mark_path(key, path)
        txn = self.zk.client.transaction()
        txn.create(mark, b"")
        txn.delete(path)
        results = await self.zk.commit(txn)
        if any(isinstance(r, NoNodeError) for r in results):
            # The node was gone already (an expired session): the owner's word still counts.
            with suppress(NodeExistsError):
                await self.zk.call("create", mark, b"")
        elif failure := next((r for r in results if isinstance(r, Exception)), None):
            raise RegistryError(f"zookeeper: withdrawing {path}: {failure!r}")

    async def mark_all(self, providers: Iterable[tuple[str, str]]) -> None:
        """Leave the marks of (key, path) providers that are about to go with the session."""
        for key, path in providers:
            with suppress(NodeExistsError):
                await self.zk.call("create", await self._mark_path(key, path), b"")

    async def _mark_path(self, key: str, path: str) -> str:
        directory = marks_dir(path)
        if directory not in self._dirs:
            await self.zk.call("ensure_path", directory)
            self._dirs.add(directory)
        return f"{directory}/{mark_name(key, time.time() + self.lease)}"

    async def read(self, service_dir: str) -> set[str]:
        """The keys withdrawn in a service; expired marks are deleted on the way."""
        directory = f"{service_dir}/{MARKS}"
        try:
            names = await self.zk.call("get_children", directory)
        except NoNodeError:
            return set()
        now, keys = time.time(), set()
        for name in names:
            mark = parse_mark(name)
            if mark is not None and mark[1] > now:
                keys.add(mark[0])
            elif mark is not None:
                with suppress(NoNodeError, RegistryError):  # someone else's cleanup won
                    await self.zk.call("delete", f"{directory}/{name}")
        return keys
