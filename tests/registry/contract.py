"""What every network registry (etcd, ZooKeeper) must do alike, against a real server.

Each function takes the test module's `open_registry(port, workspace, **kw)` context
manager, the server's port and a workspace of the test's own.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from tests.registry.servers import CuttableProxy, next_value

from sofamesh.endpoint import Endpoint
from sofamesh.registry import RegistryError
from sofamesh.registry.resilient import Backoff

FAST = Backoff(initial=0.02, maximum=0.2)
EP = Endpoint(
    "com.example.Orders",
    "127.0.0.1",
    8080,
    version="1.0",
    zone="z1",
    tags={"canary"},
    meta={"methods": "get,put"},
    app="orders",
)
Open = Callable[..., AbstractAsyncContextManager[Any]]


def ws(request: pytest.FixtureRequest) -> str:
    """A workspace of its own for each test (and backend), so tests share the server."""
    return f"t{abs(hash(request.node.nodeid)) % 10**9}"


async def publish_discover_unpublish(open_registry: Open, port: int, w: str) -> None:
    async with (
        open_registry(port, w) as pub,
        open_registry(port, w) as sub,
        sub.watch(EP.service) as snaps,
    ):
        assert await next_value(snaps) == frozenset()
        await pub.publish(EP)
        (seen,) = await next_value(snaps)
        assert seen == EP and seen.meta == (("methods", "get,put"),)
        assert await sub.list_services() == [EP.service]
        await pub.unpublish(EP)
        assert await next_value(snaps) == frozenset()
        assert await sub.list_services() == []


async def workspaces_do_not_see_each_other(open_registry: Open, port: int, w: str) -> None:
    a, b = w + "a", w + "b"
    ep_b = Endpoint(EP.service, "127.0.0.2", 9)
    async with open_registry(port, a) as ra, open_registry(port, b) as rb:
        await ra.publish(EP)
        await rb.publish(ep_b)
        async with ra.watch(EP.service) as sa, rb.watch(EP.service) as sb:
            assert await next_value(sa) == {EP}
            assert await next_value(sb) == {ep_b}
        await rb.unpublish(ep_b)
        assert await rb.list_services() == []
        assert await ra.list_services() == [EP.service]


async def documents_are_watched_like_services(open_registry: Open, port: int, w: str) -> None:
    async with open_registry(port, w) as reg, reg.watch_document("rules") as docs:
        assert await next_value(docs) is None
        await reg.put_document("rules", "flow: []\n")
        assert await next_value(docs) == "flow: []\n"
        await reg.put_document("rules", "flow: [{qps: 5}]\n")
        assert await next_value(docs) == "flow: [{qps: 5}]\n"
        await reg.delete_document("rules")
        assert await next_value(docs) is None


async def publish_while_unreachable_raises_and_retries(
    open_registry: Open, port: int, w: str
) -> None:
    """The publish fails at once (the caller hears it), and the registry's reconciler
    publishes the endpoint when the server can be reached again."""
    proxy = CuttableProxy(port)
    async with (
        proxy.serving(),
        open_registry(proxy.port, w, timeout=0.5) as pub,
        open_registry(port, w) as sub,
        sub.watch(EP.service) as snaps,
    ):
        assert await next_value(snaps) == frozenset()
        proxy.refusing = True
        await proxy.cut()
        with pytest.raises(RegistryError):
            await pub.publish(EP)
        proxy.refusing = False
        assert await next_value(snaps) == {EP}
