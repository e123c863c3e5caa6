"""The etcd registry against a real etcd 3.4 on loopback (one server for the module)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest
from tests.registry import contract, servers
from tests.registry.contract import EP, FAST, ws
from tests.registry.servers import CuttableProxy, EtcdServer, next_value, provider_process, wait_for

from sofamesh.endpoint import Endpoint
from sofamesh.registry import EtcdRegistry, open_registry
from sofamesh.registry.etcd_keys import EtcdKeys, decode_endpoint

pytestmark = pytest.mark.anyio
etcd_server = servers.etcd_server


@asynccontextmanager
async def registry(port: int, workspace: str, **kw: object) -> AsyncIterator[EtcdRegistry]:
    kw.setdefault("backoff", FAST)
    async with EtcdRegistry([("127.0.0.1", port)], workspace=workspace, **kw) as reg:  # type: ignore[arg-type]
        yield reg


async def test_publish_discover_unpublish(
    etcd_server: EtcdServer, request: pytest.FixtureRequest
) -> None:
    await contract.publish_discover_unpublish(registry, etcd_server.port, ws(request))


async def test_key_layout_is_the_documented_one(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    async with registry(etcd_server.port, w) as reg:
        await reg.publish(EP)
        _rev, kv = await reg.client.get(
            f"/sofamesh/{w}/services/com.example.Orders/http/127.0.0.1:8080".encode()
        )
        assert kv is not None and kv.lease != 0
        assert decode_endpoint(kv.value) == EP and json.loads(kv.value)["zone"] == "z1"


async def test_service_names_cannot_collide_through_slashes() -> None:
    keys = EtcdKeys("w")
    assert not keys.service("a/b").startswith(keys.service("a"))
    assert keys.service_of(keys.endpoint(Endpoint("a/b", "h", 1))) == "a/b"


async def test_workspaces_do_not_see_each_other(
    etcd_server: EtcdServer, request: pytest.FixtureRequest
) -> None:
    await contract.workspaces_do_not_see_each_other(registry, etcd_server.port, ws(request))


async def test_lease_is_kept_alive_past_its_ttl(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
) -> None:
    opened = registry(etcd_server.port, ws(request), lease_ttl=1)
    async with opened as reg, reg.watch(EP.service) as snaps:
        await reg.publish(EP)
        assert await wait_for(snaps, bool) == {EP}
        with anyio.move_on_after(2.5):  # 2.5 lease TTLs: an unrenewed lease would be gone
            await snaps.__anext__()
            pytest.fail("the endpoint changed while its lease was renewed")
        assert len((await reg.client.get_prefix(reg.keys.service(EP.service)))[1]) == 1
        assert reg.leases_granted == 1


async def test_sigkilled_provider_disappears_within_its_lease(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    url = f"{etcd_server.url}?workspace={w}&lease=1&snapshot=none"
    async with registry(etcd_server.port, w) as sub, sub.watch("svc") as snaps:
        assert await next_value(snaps) == frozenset()
        with provider_process(url, "svc", 7001) as proc:
            assert len(await next_value(snaps)) == 1
            os.kill(proc.pid, signal.SIGKILL)
            with anyio.fail_after(3.0):  # lease 1 s; etcd checks expiry every 500 ms
                gone = await next_value(snaps)
            assert gone == frozenset() and gone.withdrawn == frozenset()  # died: no mark


async def test_close_revokes_the_lease_at_once(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    async with registry(etcd_server.port, w) as sub, sub.watch("svc") as snaps:
        assert await next_value(snaps) == frozenset()
        async with registry(etcd_server.port, w, lease_ttl=60) as pub:
            await pub.publish(Endpoint("svc", "127.0.0.1", 1))
            assert len(await next_value(snaps)) == 1
        assert await next_value(snaps, timeout=2.0) == frozenset()  # not after 60 s


async def test_unpublish_and_close_leave_withdrawal_marks(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    async with registry(etcd_server.port, w) as sub, sub.watch(EP.service) as snaps:
        assert await next_value(snaps) == frozenset()
        async with registry(etcd_server.port, w, lease_ttl=60) as pub:
            await pub.publish(EP)
            assert await next_value(snaps) == {EP}
            await pub.unpublish(EP)
            gone = await next_value(snaps)  # the deletion and the mark in one reply
            assert gone == frozenset() and gone.withdrawn == {EP.key} and gone.lease == 10
            _rev, kv = await sub.client.get(
                f"/sofamesh/{w}/services/com.example.Orders/!withdrawn/http/127.0.0.1:8080".encode()
            )
            assert kv is not None and json.loads(kv.value) == {"withdrawn": EP.key}
            assert kv.lease and kv.lease != pub._lease  # its own lease: it outlives ours
            assert await sub.list_services() == []
            await pub.publish(EP)
            back = await next_value(snaps)
            assert back == {EP} and back.withdrawn == frozenset()
        closed = await next_value(snaps, timeout=2.0)
        assert closed == frozenset() and closed.withdrawn == {EP.key}


async def test_lost_lease_is_replaced_and_endpoints_written_again(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    async with registry(etcd_server.port, w, lease_ttl=1) as pub, pub.watch(EP.service) as snaps:
        await pub.publish(EP)
        assert await wait_for(snaps, bool) == {EP}
        assert pub._lease is not None
        await pub.client.lease_revoke(pub._lease)  # what an expiry during a partition does
        assert await next_value(snaps) == frozenset()
        assert await next_value(snaps) == {EP}  # the keepalive noticed, a new lease took over
        assert pub.leases_granted == 2


async def test_documents_are_watched_like_services(
    etcd_server: EtcdServer, request: pytest.FixtureRequest
) -> None:
    await contract.documents_are_watched_like_services(registry, etcd_server.port, ws(request))


async def test_publish_while_etcd_is_unreachable_raises_and_retries(
    etcd_server: EtcdServer, request: pytest.FixtureRequest
) -> None:
    await contract.publish_while_unreachable_raises_and_retries(
        registry, etcd_server.port, ws(request)
    )


async def _burst(
    writer: EtcdRegistry,
    prefix: bytes,
    proxy: CuttableProxy,
) -> tuple[list[int], set[bytes]]:
    """1,000 changes, one revision each; breaks the watch at 3 points while writing."""
    puts: list[int] = []
    live: set[bytes] = set()
    for i in range(1000):
        if i % 5 == 4:  # every fifth change deletes the previous key
            key = prefix + b"%04d" % (i - 1)
            await writer.client.delete(key)
            live.discard(key)
        else:
            key = prefix + b"%04d" % i
            await writer.client.put(key, json.dumps(i).encode())
            puts.append(i)
            live.add(key)
        if i in (200, 500, 800):
            await proxy.cut()
    await writer.client.put(prefix + b"end", b"-1")
    return puts, live


async def test_a_broken_watch_resumes_without_missing_or_replaying_a_change(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    proxy = CuttableProxy(etcd_server.port)
    seen: list[int] = []  # every PUT value the watcher applied, in order

    def record(value: bytes) -> int:
        seen.append(json.loads(value))
        return seen[-1]

    async with AsyncExitStack() as stack:
        await stack.enter_async_context(proxy.serving())
        watcher = await stack.enter_async_context(registry(proxy.port, w))
        writer = await stack.enter_async_context(registry(etcd_server.port, w))
        prefix = writer.keys.service("burst")
        states = watcher.follow_keys(prefix, record)
        stack.push_async_callback(states.aclose)
        assert await next_value(states) == {}
        result: list[tuple[list[int], set[bytes]]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _collect(result, _burst(writer, prefix, proxy)))
            # Follow while the burst goes on, up to the end mark the writer puts last.
            state = await wait_for(states, lambda s: prefix + b"end" in s, timeout=30)
        puts, live = result[0]
        assert proxy.cuts == 3 and watcher.watch_breaks >= 3
        assert seen == [*puts, -1]  # each PUT exactly once, in revision order
        assert set(state) == {*live, prefix + b"end"}


async def _collect(out: list[object], coro: object) -> None:
    out.append(await coro)  # type: ignore[misc]


async def test_compacted_revision_is_read_again(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
) -> None:
    w = ws(request)
    proxy = CuttableProxy(etcd_server.port)
    async with (
        proxy.serving(),
        registry(proxy.port, w) as watcher,
        registry(etcd_server.port, w) as writer,
        watcher.watch("svc") as snaps,
    ):
        a, b = Endpoint("svc", "127.0.0.1", 1), Endpoint("svc", "127.0.0.1", 2)
        await writer.publish(a)
        assert await wait_for(snaps, bool) == {a}
        proxy.refusing = True
        await proxy.cut()
        await writer.publish(b)
        await writer.unpublish(a)
        revision = await writer.client.put(b"/unrelated", b"x")
        await writer.client.call("/v3/kv/compaction", {"revision": str(revision)})
        proxy.refusing = False
        assert await wait_for(snaps, lambda s: s == {b}) == {b}


async def test_open_registry_by_url(etcd_server: EtcdServer, tmp_path: object) -> None:
    url = f"{etcd_server.url},127.0.0.1:1?workspace=urltest&lease=3&snapshot=none&timeout=0.5"
    async with open_registry(url) as reg:
        assert isinstance(reg, EtcdRegistry) and reg.workspace == "urltest" and reg.lease_ttl == 3
        assert reg.endpoints == (("127.0.0.1", etcd_server.port), ("127.0.0.1", 1))
        assert await reg.list_services() == []


async def test_governance_rules_live_in_etcd_and_are_watched(
    etcd_server: EtcdServer,
    request: pytest.FixtureRequest,
    tmp_path: object,
) -> None:
    import sofamesh

    w = ws(request)
    url = f"etcd://127.0.0.1:{etcd_server.port}?workspace={w}&snapshot={tmp_path}/snap.json"
    cfg = {"app": "shop", "registry": url, "rules_key": "mesh-rules"}
    async with registry(etcd_server.port, w) as admin, sofamesh.open_mesh(cfg, env={}) as mesh:
        gov = mesh.governance
        assert gov.current.document.rate_limits == ()  # no document yet: no rules
        await admin.put_document(
            "mesh-rules", "version: r1\nrate_limits: [{service: a, count: 5}]\n"
        )
        with anyio.fail_after(10):
            while gov.version != "r1":
                await gov.wait_attempt(gov.attempts)
        assert gov.origin == "registry:mesh-rules" and len(gov.current.document.rate_limits) == 1
        await admin.put_document("mesh-rules", "rate_limits: [{service: a}]\n")  # invalid: no count
        with anyio.fail_after(10):
            while gov.last_error is None:
                await gov.wait_attempt(gov.attempts)
        assert gov.version == "r1" and "rate_limits[0].count" in str(gov.last_error)
