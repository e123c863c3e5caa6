"""The etcd registry follows every watched service with one watch, not one per service."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import pytest
from tests.registry import servers
from tests.registry.servers import EtcdServer, next_value

from sofamesh.endpoint import Endpoint
from sofamesh.registry import EtcdRegistry
from sofamesh.registry.resilient import Backoff

pytestmark = pytest.mark.anyio
etcd_server = servers.etcd_server


async def test_fifty_services_share_one_watch(
    etcd_server: EtcdServer, request: pytest.FixtureRequest
) -> None:
    workspace = f"s{abs(hash(request.node.nodeid)) % 10**9}"
    hosts = [("127.0.0.1", etcd_server.port)]
    fast = Backoff(initial=0.02, maximum=0.2)
    async with (
        EtcdRegistry(hosts, workspace=workspace, backoff=fast) as pub,
        EtcdRegistry(hosts, workspace=workspace, backoff=fast) as sub,
        AsyncExitStack() as stack,
    ):
        watches: list[object] = []
        opened: list[bytes] = []
        watch = sub.client.watch

        def counting(key: bytes, *args: object, **kw: object) -> object:
            opened.append(key)
            return watch(key, *args, **kw)  # type: ignore[arg-type]

        sub.client.watch = counting  # type: ignore[method-assign]
        for i in range(50):
            watches.append(await stack.enter_async_context(sub.watch(f"svc.{i}")))
        with anyio.fail_after(10):
            for snaps in watches:
                assert await anext(snaps) == frozenset()  # type: ignore[call-overload]
            ep = Endpoint("svc.7", "127.0.0.1", 8080)
            await pub.publish(ep)
            assert await next_value(watches[7]) == {ep}  # type: ignore[arg-type]
        assert opened == [sub.keys.services]
