"""Registry outages, end to end on real servers: a cluster keeps routing while etcd or ZooKeeper
is down, converges when it is back, and a consumer started during the outage serves from its
snapshot file. Each test stops and restarts the module's server (and leaves it running)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.registry.servers import EtcdServer, ServerProcess, ZooKeeperServer, running

from sofamesh.clock import MonotonicClock
from sofamesh.config.model import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.registry import EtcdRegistry, RegistryError, Snapshot, SnapshotRegistry
from sofamesh.registry.resilient import Backoff
from sofamesh.registry.zookeeper import ZooKeeperRegistry
from sofamesh.stats import Stats
from sofamesh.upstream.cluster import ClusterManager

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.05, maximum=0.3)
A, B, C, D = (Endpoint("svc", "10.0.0.1", port) for port in (1, 2, 3, 4))


@pytest.fixture(scope="module", params=["etcd", "zookeeper"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    kind = EtcdServer if request.param == "etcd" else ZooKeeperServer
    with running(kind(tmp_path_factory.mktemp(request.param))) as srv:
        yield srv


def open_backend(server: ServerProcess, workspace: str, ttl: int = 5) -> Any:
    hosts = [("127.0.0.1", server.port)]
    if isinstance(server, EtcdServer):
        return EtcdRegistry(hosts, workspace=workspace, lease_ttl=ttl, timeout=0.5, backoff=FAST)
    return ZooKeeperRegistry(
        hosts, workspace=workspace, session_timeout=ttl, timeout=0.5, backoff=FAST
    )


class AppliedSpy:
    """Passes a registry through, and knows which snapshots its consumer has applied:
    a snapshot counts once the consumer asks for the next one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.applied: list[Snapshot] = []
        self._changed = anyio.Event()

    @asynccontextmanager
    async def watch(self, service: str) -> AsyncIterator[AsyncIterator[Snapshot]]:
        async with self.inner.watch(service) as snaps:
            spied = self._spy(snaps)
            try:
                yield spied
            finally:
                await spied.aclose()

    async def _spy(self, snaps: AsyncIterator[Snapshot]) -> AsyncGenerator[Snapshot]:
        async for snap in snaps:
            yield snap
            self.applied.append(snap)
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_applied(self, wanted: Callable[[Snapshot], bool], timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not (self.applied and wanted(self.applied[-1])):
                await self._changed.wait()


@asynccontextmanager
async def consumer(
    server: ServerProcess,
    workspace: str,
    snapshot: Path,
) -> AsyncIterator[tuple[AppliedSpy, ClusterManager, SnapshotRegistry]]:
    """A mesh consumer as the runtime builds one: snapshot-wrapped registry, cluster manager."""
    reg = SnapshotRegistry(
        open_backend(server, workspace), snapshot, cold_start_wait=0.3, flush_interval=0.05
    )
    async with reg:
        spy = AppliedSpy(reg)
        async with ClusterManager(spy, lambda _s: PolicyConfig(), Stats(), MonotonicClock()) as cm:
            yield spy, cm, reg


class SteadyLoad:
    """Routing decisions for `svc` every 5 ms, as a steady stream of calls would ask."""

    def __init__(self, cm: ClusterManager) -> None:
        self.cluster = cm.get("svc")
        self.calls = self.failures = 0
        self._tick = anyio.Event()

    async def run(self) -> None:
        while True:
            self.calls += 1
            if self.cluster.pick(set(), MonotonicClock().now()) is None:
                self.failures += 1
            self._tick.set()
            self._tick = anyio.Event()
            await anyio.sleep(0.005)

    async def wait_calls(self, n: int) -> None:
        target = self.calls + n
        with anyio.fail_after(10):
            while self.calls < target:
                await self._tick.wait()


async def publish_during_outage(reg: Any, ep: Endpoint) -> None:
    with pytest.raises(RegistryError):
        await reg.publish(ep)  # refused now, kept and published once the registry is back


async def test_cluster_keeps_routing_through_an_outage_and_converges_after(
    server: ServerProcess,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    w = f"o{abs(hash(request.node.nodeid)) % 10**9}"
    async with AsyncExitStack() as stack:
        p1 = await stack.enter_async_context(open_backend(server, w))
        p2 = await stack.enter_async_context(open_backend(server, w))
        p3 = await stack.enter_async_context(open_backend(server, w))
        spy, cm, _reg = await stack.enter_async_context(consumer(server, w, tmp_path / "s.json"))
        load = SteadyLoad(cm)
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.run)
            async with open_backend(server, w, ttl=1) as p4:
                await p1.publish(A)
                await p2.publish(B)
                await p4.publish(D)
                await spy.wait_applied(lambda s: s == {A, B, D})
                load.calls = load.failures = 0  # count from here: every call must find a peer
                await server.stop_async()
                await p2.unpublish(B)  # cannot reach the registry: retried in the background
                await publish_during_outage(p3, C)
            # p4 is gone for good without a goodbye: its lease (session) expires after the outage.
            await load.wait_calls(20)  # the load runs on against the outage
            assert set(cm.get("svc").endpoints) == {A, B, D}
            await server.start_async()
            await spy.wait_applied(lambda s: s == {A, C}, timeout=15)
            tg.cancel_scope.cancel()
    assert load.failures == 0 and load.calls > 20
    first = next(i for i, snap in enumerate(spy.applied) if snap)
    assert frozenset() not in spy.applied[first:]  # no registry error ever emptied the cluster


async def test_a_consumer_started_during_the_outage_serves_from_its_snapshot(
    server: ServerProcess,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    w = f"c{abs(hash(request.node.nodeid)) % 10**9}"
    snapshot = tmp_path / "snapshot.json"
    async with open_backend(server, w) as publisher:
        await publisher.publish(A)
        async with consumer(server, w, snapshot) as (spy, cm, _reg):
            cm.get("svc")
            await spy.wait_applied(lambda s: s == {A})
        assert snapshot.exists()

        await server.stop_async()
        await publish_during_outage(publisher, B)
        async with consumer(server, w, snapshot) as (spy, cm, reg):
            cm.get("svc")
            await spy.wait_applied(lambda s: s == {A})  # from the file: the registry is down
            assert reg.statistics().served_from_file == 1
            assert cm.get("svc").pick(set(), 0.0) == A
            await server.start_async()
            await spy.wait_applied(lambda s: s == {A, B}, timeout=15)


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app: 200 "ok" to every request."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_sdk_calls_keep_succeeding_while_the_registry_is_down(
    server: ServerProcess,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """End to end through `open_mesh`: HTTP calls from one SDK app to another, by URL."""
    from sofamesh.sdk import open_mesh

    w = f"e{abs(hash(request.node.nodeid)) % 10**9}"
    scheme = "etcd" if isinstance(server, EtcdServer) else "zookeeper"
    ttl = "lease=3" if scheme == "etcd" else "session_timeout=5"
    url = f"{scheme}://127.0.0.1:{server.port}?workspace={w}&{ttl}&timeout=0.5"
    async with (
        open_mesh({"app": "orders", "registry": f"{url}&snapshot=none"}) as provider,
        provider.serve_asgi(hello, ["com.example.Orders"], lifespan=False),
        open_mesh({"app": "shop", "registry": f"{url}&snapshot={tmp_path}/s.json"}) as shop,
    ):

        async def call() -> int:
            return (await shop.request("com.example.Orders", "GET", "/", timeout=5)).status

        assert await call() == 200
        await server.stop_async()
        assert [await call() for _ in range(20)] == [200] * 20
        await server.start_async()
        assert [await call() for _ in range(20)] == [200] * 20
