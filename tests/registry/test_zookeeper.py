"""The ZooKeeper registry against a real ZooKeeper 3.8 on loopback (one server per module)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest
from kazoo.client import KazooClient
from tests.registry import contract, servers
from tests.registry.contract import EP, FAST, ws
from tests.registry.servers import (
    CuttableProxy,
    ZooKeeperServer,
    next_value,
    provider_process,
    wait_for,
)
from tests.registry.test_dubbo_url import DUBBO_NODE

from sofamesh.clock import FakeClock
from sofamesh.config import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.registry import open_registry
from sofamesh.registry.dubbo_url import endpoint_to_url, java_url_decode, url_to_endpoint
from sofamesh.registry.zookeeper import ZooKeeperRegistry
from sofamesh.stats import Stats
from sofamesh.upstream.cluster import ClusterManager

pytestmark = pytest.mark.anyio
zookeeper_server = servers.zookeeper_server


@asynccontextmanager
async def registry(port: int, workspace: str, **kw: object) -> AsyncIterator[ZooKeeperRegistry]:
    kw.setdefault("backoff", FAST)
    async with ZooKeeperRegistry([("127.0.0.1", port)], workspace=workspace, **kw) as reg:  # type: ignore[arg-type]
        yield reg


async def test_publish_discover_unpublish(
    zookeeper_server: ZooKeeperServer, request: pytest.FixtureRequest
) -> None:
    await contract.publish_discover_unpublish(registry, zookeeper_server.port, ws(request))


async def test_dubbo_layout_both_ways(
    zookeeper_server: ZooKeeperServer,
    request: pytest.FixtureRequest,
) -> None:
    """Our provider node is where and what Dubbo reads; a Dubbo provider's node is an endpoint."""
    async with registry(zookeeper_server.port, "default") as reg:
        await reg.publish(EP)
        base = "/dubbo/com.example.Orders"
        assert set(await reg.zk.call("get_children", base)) >= {
            "providers",
            "consumers",
            "routers",
            "configurators",
        }
        (node,) = await reg.zk.call("get_children", f"{base}/providers")
        assert url_to_endpoint(java_url_decode(node)) == EP
        _data, stat = await reg.zk.call("get", f"{base}/providers/{node}")
        assert stat.ephemeralOwner == reg.zk.session_id
        dubbo_path = "/dubbo/org.apache.dubbo.demo.DemoService/providers/" + DUBBO_NODE
        await reg.zk.call("create", dubbo_path, b"", ephemeral=True, makepath=True)
        consumers = "/dubbo/org.apache.dubbo.demo.DemoService/consumers"
        async with reg.watch("org.apache.dubbo.demo.DemoService") as snaps:
            (ep,) = await next_value(snaps)
            assert (ep.protocol, ep.address, ep.version, ep.weight) == (
                "dubbo",
                "192.168.1.5:20880",
                "1.0.0",
                50,
            )
            with anyio.fail_after(5):  # consumers register in the background
                await reg.reconciler.in_sync.wait()
            (consumer,) = await reg.zk.call("get_children", consumers)
            assert "side%3Dconsumer" in consumer
        with anyio.fail_after(5):
            await reg.reconciler.in_sync.wait()
        assert await reg.zk.call("get_children", consumers) == []
        await reg.unpublish(EP)


async def test_services_are_listed_by_their_mesh_names(
    zookeeper_server: ZooKeeperServer,
    request: pytest.FixtureRequest,
) -> None:
    """Nodes live under the interface, but a service is listed as the mesh names it, so a
    lowercased `Host` (`com.example.orders:1.0`) resolves to the registered spelling."""
    bolt = Endpoint("com.example.Orders:1.0", "127.0.0.1", 12200, protocol="bolt")
    dubbo = Endpoint("g1/com.example.Pay:2.0", "127.0.0.1", 20880, protocol="dubbo")
    other = Endpoint("com.example.Pay:3.0", "127.0.0.1", 20881, protocol="dubbo")
    async with registry(zookeeper_server.port, ws(request)) as reg:
        for ep in (bolt, dubbo, other):
            await reg.publish(ep)
        names = ["com.example.Orders:1.0", "com.example.Pay:3.0", "g1/com.example.Pay:2.0"]
        assert await reg.list_services() == names
        clusters = ClusterManager(reg, lambda _s: PolicyConfig(), Stats(), FakeClock())
        async with clusters:
            assert await clusters.canonical_name("com.example.orders:1.0") == bolt.service
            assert await clusters.canonical_name("g1/com.example.pay:2.0") == dubbo.service


async def test_workspaces_do_not_see_each_other(
    zookeeper_server: ZooKeeperServer, request: pytest.FixtureRequest
) -> None:
    await contract.workspaces_do_not_see_each_other(registry, zookeeper_server.port, ws(request))
    assert ZooKeeperRegistry([("127.0.0.1", 1)], workspace="w1").paths.root == "/w1"


async def test_sigkilled_provider_disappears_within_its_session_timeout(
    zookeeper_server: ZooKeeperServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    url = f"{zookeeper_server.url}?workspace={w}&session_timeout=1&snapshot=none"
    async with registry(zookeeper_server.port, w) as sub, sub.watch("svc") as snaps:
        assert await next_value(snaps) == frozenset()
        with provider_process(url, "svc", 7001) as proc:
            assert len(await next_value(snaps)) == 1
            os.kill(proc.pid, signal.SIGKILL)
            with anyio.fail_after(4.0):  # session 1 s; the server checks every tick (500 ms)
                gone = await next_value(snaps)
            assert gone == frozenset() and gone.withdrawn == frozenset()  # died: no mark


async def test_close_ends_the_session_and_joins_kazoo_threads(
    zookeeper_server: ZooKeeperServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    async with registry(zookeeper_server.port, w) as sub, sub.watch("svc") as snaps:
        assert await next_value(snaps) == frozenset()
        before = set(threading.enumerate())
        async with registry(zookeeper_server.port, w, session_timeout=30) as pub:
            await pub.publish(Endpoint("svc", "127.0.0.1", 1))
            assert len(await next_value(snaps)) == 1
            assert len(set(threading.enumerate()) - before) >= 2  # kazoo's own threads
        assert await next_value(snaps, timeout=2.0) == frozenset()  # not after 30 s
        assert not [
            t
            for t in set(threading.enumerate()) - before
            if t.is_alive() and not t.name.startswith(("AnyIO worker", "Trio thread"))
        ]


async def test_unpublish_and_close_leave_withdrawal_marks(
    zookeeper_server: ZooKeeperServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    port = zookeeper_server.port
    marks = f"/{w}/com.example.Orders/sofamesh-withdrawn"
    async with registry(port, w) as sub, sub.watch(EP.service) as snaps:
        assert await next_value(snaps) == frozenset()
        async with registry(port, w, session_timeout=30) as pub:
            await pub.publish(EP)
            assert await next_value(snaps) == {EP}
            await pub.unpublish(EP)
            gone = await next_value(snaps)
            assert gone == frozenset() and gone.withdrawn == {EP.key} and gone.lease == 10
            (name,) = await sub.zk.call("get_children", marks)
            expires, _sep, key = name.partition("-")
            assert java_url_decode(key) == EP.key
            assert abs(int(expires) / 1000 - (time.time() + 30)) < 5  # the owner's session
            assert await sub.list_services() == []
            other = Endpoint(EP.service, "127.0.0.1", 8081)
            await pub.publish_many([EP, other])
            back = await wait_for(snaps, lambda snap: len(snap) == 2)
            assert EP.key in back.withdrawn  # listed wins over the mark left from before
        closed = await next_value(snaps, timeout=2.0)  # `other` has a mark only from closing
        assert closed == frozenset() and closed.withdrawn == {EP.key, other.key}


async def test_an_expired_mark_is_deleted_by_its_reader(
    zookeeper_server: ZooKeeperServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    marks = f"/{w}/svc/sofamesh-withdrawn"
    async with registry(zookeeper_server.port, w) as reg:
        old = f"{marks}/{int((time.time() - 1) * 1000)}-svc%7Chttp%7C127.0.0.1%3A1"
        await reg.zk.call("create", old, b"", makepath=True)
        async with reg.watch("svc") as snaps:
            assert (await next_value(snaps)).withdrawn == frozenset()
        assert await reg.zk.call("get_children", marks) == []


def _expire(port: int, client_id: tuple[int, bytes]) -> None:
    """End a session from outside, as the server does when it expires: another client
    takes it over with its id and password, then closes it."""
    thief = KazooClient(hosts=f"127.0.0.1:{port}", client_id=client_id)
    thief.start(timeout=5)
    thief.stop()
    thief.close()


async def test_expired_session_means_a_new_one_and_our_nodes_again(
    zookeeper_server: ZooKeeperServer,
    request: pytest.FixtureRequest,
) -> None:
    w, port = ws(request), zookeeper_server.port
    async with registry(port, w) as pub, registry(port, w) as sub, sub.watch(EP.service) as snaps:
        await pub.publish(EP)
        assert await wait_for(snaps, bool) == {EP}
        assert pub.sessions == 1
        await anyio.to_thread.run_sync(_expire, zookeeper_server.port, pub.zk.client.client_id)
        assert await next_value(snaps) == frozenset()  # the old session's node went with it
        assert await next_value(snaps) == {EP}  # the reconciler made it again
        assert pub.sessions == 2


async def test_documents_are_watched_like_services(
    zookeeper_server: ZooKeeperServer, request: pytest.FixtureRequest
) -> None:
    await contract.documents_are_watched_like_services(registry, zookeeper_server.port, ws(request))


async def test_publish_while_zookeeper_is_unreachable_raises_and_retries(
    zookeeper_server: ZooKeeperServer, request: pytest.FixtureRequest
) -> None:
    await contract.publish_while_unreachable_raises_and_retries(
        registry, zookeeper_server.port, ws(request)
    )


def _states() -> tuple[list[frozenset[int]], list[tuple[str, int]]]:
    """The 1,000 changes of the burst (create port i; every fifth deletes the one made two
    steps before, so no state repeats), and the endpoint set after each."""
    ops: list[tuple[str, int]] = []
    states, live = [], set()
    for i in range(1000):
        op = ("delete", i - 2) if i % 5 == 4 else ("create", i)
        ops.append(op)
        live.discard(op[1]) if op[0] == "delete" else live.add(op[1])
        states.append(frozenset(live))
    return states, ops


async def test_a_broken_watch_resumes_and_loses_no_change(
    zookeeper_server: ZooKeeperServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    proxy = CuttableProxy(zookeeper_server.port)
    states, ops = _states()
    index = {state: k for k, state in enumerate(states)}
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(proxy.serving())
        watcher = await stack.enter_async_context(registry(proxy.port, w))
        writer = await stack.enter_async_context(registry(zookeeper_server.port, w))
        await writer.zk.call("ensure_path", writer.paths.category("burst", "providers"))
        snaps = await stack.enter_async_context(watcher.watch("burst"))
        assert await next_value(snaps) == frozenset()
        seen: list[int] = []  # the step of the burst each snapshot shows

        async def write() -> None:
            for i, (op, port) in enumerate(ops):
                ep = Endpoint("burst", "127.0.0.1", port + 1)
                url = endpoint_to_url(ep, timestamp_ms=0, pid=0)
                path = writer.paths.node("burst", "providers", url)
                await writer.zk.call(op, path, *((b"",) if op == "create" else ()))
                if i in (200, 500, 800):
                    await proxy.cut()

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            async for snap in snaps:
                ports = frozenset(ep.port - 1 for ep in snap)
                assert ports in index, "a snapshot that never existed"
                seen.append(index[ports])
                if seen[-1] == len(states) - 1:
                    break
        assert seen == sorted(seen), "a snapshot went back in time"
        assert proxy.cuts == 3


async def test_open_registry_by_url(zookeeper_server: ZooKeeperServer) -> None:
    url = f"{zookeeper_server.url}?workspace=urltest&session_timeout=4&snapshot=none"
    async with open_registry(url) as reg:
        assert isinstance(reg, ZooKeeperRegistry) and reg.paths.root == "/urltest"
        assert reg.session_timeout == 4
        assert await reg.list_services() == []
