"""The foundation's filters through the real chain, with a memory registry and fake terminals."""

from __future__ import annotations

import socket

import anyio
import anyio.abc
import pytest

from sofamesh.chain import build_chain
from sofamesh.clock import FakeClock
from sofamesh.config import MeshConfig, PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.filters.deadline import InboundDeadlineFilter
from sofamesh.filters.timeout import TimeoutFilter
from sofamesh.model import Invocation, Result, Status
from sofamesh.registry import MemoryHub, MemoryRegistry
from sofamesh.stats import Stats
from sofamesh.upstream.balance import BalanceFilter, ResolveFilter
from sofamesh.upstream.balancers import DEFAULT_HASH_HEADER
from sofamesh.upstream.cluster import ClusterManager
from sofamesh.upstream.outlier import OutlierConfig
from sofamesh.upstream.retry import RetryFilter

pytestmark = pytest.mark.anyio

EPS = [Endpoint("svc", "127.0.0.1", p) for p in (1, 2, 3)]
PROTOCOLS = frozenset({"http", "h2", "grpc", "bolt"})  # what a runtime carries


def policy(**kw: object) -> PolicyConfig:
    return PolicyConfig(**kw)  # type: ignore[arg-type]


async def test_timeout_sets_deadline_and_fails_slow_calls() -> None:
    clock = FakeClock()
    seen: list[float | None] = []

    async def slow(inv: Invocation) -> Result:
        seen.append(inv.deadline)
        await anyio.sleep(10)
        return Result(Status.OK)

    chain = build_chain([TimeoutFilter(lambda s: policy(timeout=0.05), clock)], slow)
    result = await chain(Invocation("http", "svc", "/"))
    assert result.status is Status.TIMEOUT and "did not answer within 50 ms" in result.detail
    assert seen == [clock.now() + 0.05]


async def test_callers_tighter_deadline_wins_and_passed_deadline_fails_fast() -> None:
    clock = FakeClock()
    calls = 0

    async def ok(inv: Invocation) -> Result:
        nonlocal calls
        calls += 1
        return Result(Status.OK)

    chain = build_chain([TimeoutFilter(lambda s: policy(timeout=30), clock)], ok)
    inv = Invocation("http", "svc", "/", deadline=clock.now() + 1)
    assert (await chain(inv)).ok and inv.deadline == clock.now() + 1
    late = Invocation("http", "svc", "/", deadline=clock.now() - 1)
    assert (await chain(late)).status is Status.TIMEOUT and calls == 1


async def test_inbound_deadline_refuses_expired_work() -> None:
    clock = FakeClock()

    async def never(inv: Invocation) -> Result:
        raise AssertionError("the app must not be called")

    chain = build_chain([InboundDeadlineFilter(clock)], never)
    result = await chain(Invocation("http", "svc", "/", deadline=clock.now()))
    assert result.status is Status.TIMEOUT


async def mesh_chain(terminal, retries: int = 2, outlier: OutlierConfig | None = None):  # type: ignore[no-untyped-def]
    hub = MemoryHub()
    clock = FakeClock()
    pol = policy(connect_retries=retries, outlier=outlier or OutlierConfig())
    reg = MemoryRegistry(hub)
    for ep in EPS:
        await reg.publish(ep)
    cm = ClusterManager(reg, lambda s: pol, Stats(), clock, protocols=PROTOCOLS)
    chain = build_chain(
        [RetryFilter(lambda s: pol, Stats(), clock), BalanceFilter(cm, clock)], terminal
    )
    return cm, chain, clock


async def test_connect_failure_retries_on_a_different_endpoint() -> None:
    tried: list[int] = []

    async def refuse_first_two(inv: Invocation) -> Result:
        assert inv.endpoint is not None
        tried.append(inv.endpoint.port)
        return Result(Status.CONNECT_FAILED) if len(tried) < 3 else Result(Status.OK)

    cm, chain, _ = await mesh_chain(refuse_first_two)
    async with cm:
        result = await chain(Invocation("http", "svc", "/"))
    assert result.ok and len(set(tried)) == 3


async def test_reset_is_retried_only_when_idempotent() -> None:
    attempts = 0

    async def reset(inv: Invocation) -> Result:
        nonlocal attempts
        attempts += 1
        return Result(Status.UPSTREAM_RESET)

    cm, chain, _ = await mesh_chain(reset)
    async with cm:
        await chain(Invocation("http", "svc", "/", idempotent=False))
        assert attempts == 1
        await chain(Invocation("http", "svc", "/", idempotent=True))
        assert attempts == 1 + 3


async def test_no_endpoints_names_the_service() -> None:
    async def unused(inv: Invocation) -> Result:
        raise AssertionError

    clock = FakeClock()
    cm = ClusterManager(
        MemoryRegistry(MemoryHub()), lambda s: policy(), Stats(), clock, protocols=PROTOCOLS
    )
    chain = build_chain([BalanceFilter(cm, clock)], unused)
    async with cm:
        result = await chain(Invocation("http", "com.example.Nobody", "/"))
    assert result.status is Status.NO_ENDPOINT
    assert "com.example.Nobody" in result.detail and "no endpoints registered" in result.detail


async def test_failing_endpoint_is_ejected_and_skipped() -> None:
    async def port1_fails(inv: Invocation) -> Result:
        assert inv.endpoint is not None
        return Result(Status.APP_ERROR if inv.endpoint.port == 1 else Status.OK)

    cm, chain, _ = await mesh_chain(port1_fails, outlier=OutlierConfig(consecutive_failures=2))
    async with cm:
        ports = []
        for _ in range(12):
            ports.append((await chain(Invocation("http", "svc", "/"))).endpoint.port)  # type: ignore[union-attr]
        cluster = cm.clusters["svc"]
        assert cluster.describe()["endpoints"][0]["health"] == "ejected"
    assert 1 not in ports[-6:]  # after two failures, port 1 gets nothing


async def test_lowercased_host_resolves_to_registered_service() -> None:
    async def ok(inv: Invocation) -> Result:
        return Result(Status.OK)

    clock = FakeClock()
    reg = MemoryRegistry(MemoryHub())
    await reg.publish(Endpoint("com.example.Orders", "127.0.0.1", 9))
    cm = ClusterManager(reg, lambda s: policy(), Stats(), clock, protocols=PROTOCOLS)
    chain = build_chain([ResolveFilter(cm), BalanceFilter(cm, clock)], ok)
    async with cm:
        inv = Invocation("http", "com.example.orders", "/")
        assert (await chain(inv)).ok
    assert inv.service == "com.example.Orders"


async def test_active_health_check_takes_a_dead_endpoint_out() -> None:
    from sofamesh.upstream.health import HealthCheckConfig

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    alive = Endpoint("svc", "127.0.0.1", listener.extra(anyio.abc.SocketAttribute.local_port))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = Endpoint("svc", "127.0.0.1", s.getsockname()[1])
    hc = HealthCheckConfig(interval=0.05, timeout=0.5, unhealthy_threshold=1, jitter=0)
    reg = MemoryRegistry(MemoryHub())
    for ep in (alive, dead, Endpoint("svc", "127.0.0.1", 9, protocol="thrift")):
        await reg.publish(ep)
    clock = FakeClock()
    cm = ClusterManager(reg, lambda s: policy(health_check=hc), Stats(), clock, protocols=PROTOCOLS)
    async with listener, cm:
        cluster = cm.get("svc")
        await cluster.ready.wait()
        assert set(cluster.endpoints) == {alive, dead}  # the thrift instance is not callable
        assert cluster.health is not None
        with anyio.fail_after(5):
            while cluster.health.is_healthy(dead):
                await cluster.health.wait_changed()
        assert {cluster.pick(set(), clock.now()) for _ in range(6)} == {alive}
        health = {e["port"]: e["health"] for e in cluster.describe()["endpoints"]}
        assert health == {alive.port: "healthy", dead.port: "unhealthy"}


async def test_timeout_on_the_shared_deadline_watch() -> None:
    from sofamesh.deadlines import DeadlineWatch

    watch = DeadlineWatch()
    clock = FakeClock()
    release = anyio.Event()

    async def slow(inv: Invocation) -> Result:
        await release.wait()
        return Result(Status.OK)

    async def fast(inv: Invocation) -> Result:
        return Result(Status.OK)

    slow_chain = build_chain([TimeoutFilter(lambda s: policy(timeout=0.05), clock, watch)], slow)
    fast_chain = build_chain([TimeoutFilter(lambda s: policy(timeout=30), clock, watch)], fast)
    async with anyio.create_task_group() as tg:
        await tg.start(watch.run)
        for _ in range(200):  # finished calls leave nothing armed behind
            assert (await fast_chain(Invocation("http", "svc", "/"))).ok
        assert watch._live == 0 and len(watch._heap) <= 64
        # the watch sleeps towards a deadline 30 s away; a 50 ms one must wake it
        parked = build_chain([TimeoutFilter(lambda s: policy(timeout=30), clock, watch)], slow)
        tg.start_soon(parked, Invocation("http", "svc", "/"))
        with anyio.fail_after(5):
            result = await slow_chain(Invocation("http", "svc", "/"))
        assert result.status is Status.TIMEOUT
        release.set()
        tg.cancel_scope.cancel()


async def test_success_rate_outlier_detection_ejects_the_worst_endpoint() -> None:
    from sofamesh.upstream.success_rate import SuccessRateConfig

    eps = [Endpoint("svc", "127.0.0.1", p) for p in range(1, 7)]
    reg = MemoryRegistry(MemoryHub())
    for ep in eps:
        await reg.publish(ep)
    clock = FakeClock()
    sr = SuccessRateConfig(interval=10, request_volume=20, minimum_hosts=5)
    cm = ClusterManager(reg, lambda s: policy(success_rate=sr), Stats(), clock, protocols=PROTOCOLS)
    async with cm:
        cluster = cm.get("svc")
        await cluster.ready.wait()
        cluster.record(eps[0], False, Status.OK, 1.0)  # starts the first interval
        for i in range(40):  # endpoint 1 fails every other call; the others never
            for ep in eps:
                failed = ep.port == 1 and i % 2 == 0
                cluster.record(ep, failed, Status.APP_ERROR if failed else Status.OK, 1.0)
        clock.advance(10.5)
        assert {cluster.pick(set(), clock.now()) for _ in range(30)} == set(eps[1:])
        (worst,) = [e for e in cluster.describe()["endpoints"] if e["health"] == "ejected"]
        assert worst["port"] == 1


async def test_policy_ring_hash_keeps_a_key_on_one_endpoint_across_calls() -> None:
    seen: list[int] = []

    async def record(inv: Invocation) -> Result:
        assert inv.endpoint is not None
        seen.append(inv.endpoint.port)
        return Result(Status.OK)

    clock = FakeClock()
    reg = MemoryRegistry(MemoryHub())
    for ep in EPS:
        await reg.publish(ep)
    pol = policy(balancer="ring_hash")
    cm = ClusterManager(reg, lambda s: pol, Stats(), clock, protocols=PROTOCOLS)
    chain = build_chain([BalanceFilter(cm, clock)], record)
    async with cm:
        for key in ("alice", "bob", "carol", "dave"):
            for _ in range(3):
                inv = Invocation("http", "svc", "/")
                inv.headers.set(DEFAULT_HASH_HEADER, key)
                await chain(inv)
    per_key = [set(seen[i : i + 3]) for i in range(0, 12, 3)]
    assert all(len(ports) == 1 for ports in per_key)  # each key stayed on its endpoint
    assert len(set().union(*per_key)) > 1  # and the keys did not all land on one


async def test_cluster_keeps_only_the_protocols_the_runtime_carries() -> None:
    clock = FakeClock()
    reg = MemoryRegistry(MemoryHub())
    await reg.publish(Endpoint("svc", "127.0.0.1", 7, protocol="bolt"))
    await reg.publish(Endpoint("svc", "127.0.0.1", 8, protocol="http"))
    cm = ClusterManager(reg, lambda s: policy(), Stats(), clock, protocols={"http"})
    async with cm:
        cluster = cm.get("svc")
        await cluster.ready.wait()
        assert [e.port for e in cluster.endpoints] == [8]


async def test_the_watch_tells_anyios_time_without_reading_it() -> None:
    from sofamesh.deadlines import DeadlineWatch

    watch = DeadlineWatch()
    async with anyio.create_task_group() as tg:
        await tg.start(watch.run)
        for seconds in (0.0, 2.5):  # trio's clock is offset from the monotonic one
            before = anyio.current_time()
            at = watch.time_in(seconds)
            assert before + seconds - 0.01 <= at <= anyio.current_time() + seconds + 0.01
        tg.cancel_scope.cancel()


async def test_timeout_policies_are_read_once_when_composed() -> None:
    clock = FakeClock()
    asked: list[str] = []

    def policy_for(service: str) -> PolicyConfig:
        asked.append(service)
        return policy(timeout=99)

    policies = MeshConfig("app", policy=policy(timeout=30), services={"slow": policy(timeout=5)})
    flt = TimeoutFilter(policy_for, clock, enforce=False, policies=policies)
    deadlines: list[float | None] = []

    async def note(inv: Invocation) -> Result:
        deadlines.append(inv.deadline)
        return Result(Status.OK)

    chain = build_chain([flt], note)
    for service in ("slow", "other"):
        await chain(Invocation("http", service, "/"))
    start = clock.now()
    assert deadlines == [start + 5, start + 30] and asked == []
