"""Active health checks: the pure state machine, each probe on loopback, the checker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sofamesh import protocols
from sofamesh.codecs import bolt
from sofamesh.endpoint import Endpoint
from sofamesh.protocols.bolt.probe import bolt_probe
from sofamesh.protocols.http.probe import http_probe
from sofamesh.upstream.health import (
    Health,
    HealthCheckConfig,
    HealthChecker,
    HealthState,
    probe_of,
    tcp_probe,
)

CFG = HealthCheckConfig(unhealthy_threshold=2, healthy_threshold=2)


def test_new_endpoints_start_healthy_and_flip_after_the_thresholds() -> None:
    state = HealthState(CFG)
    state.set_endpoints(["a", "b"])
    assert state.is_healthy("a")
    assert state.record("a", False) is None
    assert state.record("a", False) is Health.UNHEALTHY
    assert not state.is_healthy("a") and state.is_healthy("b")
    assert state.record("a", True) is None
    assert state.record("a", False) is None  # a failure resets the success streak
    assert state.record("a", True) is None
    assert state.record("a", True) is Health.HEALTHY
    assert state.statistics().transitions == 2 and state.statistics().failed_checks == 3


def test_forgotten_and_unknown_endpoints_are_not_vetoed() -> None:
    state = HealthState(CFG)
    state.set_endpoints(["a"])
    state.record("a", False)
    state.record("a", False)
    state.set_endpoints(["b"])
    assert state.is_healthy("a") and state.record("a", False) is None
    state.set_endpoints(["a", "b"])
    assert state.is_healthy("a")  # back from the registry: vouched for again


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 4), st.integers(1, 4))
def test_verdict_matches_a_streak_model(outcomes: list[bool], down: int, up: int) -> None:
    state = HealthState(HealthCheckConfig(unhealthy_threshold=down, healthy_threshold=up))
    state.set_endpoints(["x"])
    healthy, streak_ok, streak_bad = True, 0, 0
    for ok in outcomes:
        state.record("x", ok)
        streak_ok, streak_bad = (streak_ok + 1, 0) if ok else (0, streak_bad + 1)
        if healthy and streak_bad >= down:
            healthy = False
        elif not healthy and streak_ok >= up:
            healthy = True
        assert state.is_healthy("x") == healthy


@pytest.mark.parametrize(
    "bad", [{"kind": "udp"}, {"interval": 0}, {"jitter": 2.0}, {"unhealthy_threshold": 0}]
)
def test_config_rejects_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        HealthCheckConfig(**bad)  # type: ignore[arg-type]


def test_the_kinds_are_tcp_and_the_protocols_with_a_probe() -> None:
    assert protocols.health_kinds() == ("tcp", "http", "bolt", "dubbo")
    assert protocols.health_probe("http") is http_probe
    assert protocols.health_probe("bolt") is bolt_probe
    assert protocols.health_probe("grpc") is None
    with pytest.raises(
        ValueError, match="expected one of \\['tcp', 'http', 'bolt', 'dubbo'\\], got 'h2'"
    ):
        HealthCheckConfig(kind="h2")


# -- probes against real sockets ----------------------------------------------------------------

Handler = Callable[[anyio.abc.SocketStream], object]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Endpoint]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        yield Endpoint("svc", "127.0.0.1", port)
        tg.cancel_scope.cancel()


def http_answering(status: int) -> Handler:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            assert request.startswith(b"GET /health HTTP/1.1\r\n")
            await stream.send(b"HTTP/1.1 %d X\r\ncontent-length: 0\r\n\r\n" % status)

    return handle


def bolt_answering(status: int) -> Handler:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        decoder = bolt.FrameDecoder()
        async with stream:
            while (frame := decoder.next_frame()) is None:
                decoder.receive_data(await stream.receive())
            assert isinstance(frame, bolt.RequestFrame) and frame.is_heartbeat
            ack = bolt.heartbeat_ack(frame)
            await stream.send(
                bolt.encode(
                    bolt.ResponseFrame(
                        ack.request_id,
                        status,
                        b"",
                        b"",
                        b"",
                        ack.cmd_code,
                        ack.codec,
                        ack.version,
                        ack.ver1,
                        ack.switch,
                    )
                )
            )

    return handle


async def just_close(stream: anyio.abc.SocketStream) -> None:
    await stream.aclose()


@pytest.mark.anyio
async def test_the_checker_probes_with_the_probe_its_kind_names() -> None:
    async with serving(http_answering(204)) as ep:
        assert await probe_of(HealthCheckConfig(kind="http"))(ep)
    async with serving(http_answering(503)) as ep:
        assert not await probe_of(HealthCheckConfig(kind="http"))(ep)
    async with serving(just_close) as ep:
        assert await probe_of(HealthCheckConfig(kind="tcp"))(ep)


@pytest.mark.anyio
async def test_tcp_probe() -> None:
    async with serving(just_close) as ep:
        assert await tcp_probe(ep, CFG)


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "ok"), [(200, True), (204, True), (503, False), (404, False)])
async def test_http_probe(status: int, ok: bool) -> None:
    async with serving(http_answering(status)) as ep:
        assert await http_probe(ep, CFG) is ok


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "ok"),
    [(bolt.ResponseStatus.SUCCESS, True), (bolt.ResponseStatus.SERVER_EXCEPTION, False)],
)
async def test_bolt_heartbeat_probe(status: int, ok: bool) -> None:
    async with serving(bolt_answering(status)) as ep:
        assert await bolt_probe(ep, CFG) is ok


# -- the checker --------------------------------------------------------------------------------

FAST = HealthCheckConfig(
    kind="http", interval=0.02, timeout=0.5, unhealthy_threshold=2, healthy_threshold=1
)


@pytest.mark.anyio
async def test_a_failing_endpoint_is_marked_down_and_back_up() -> None:
    answer = [200]

    async def handle(stream: anyio.abc.SocketStream) -> None:
        await http_answering(answer[0])(stream)

    async with serving(handle) as ep, HealthChecker(FAST) as hc:
        other = Endpoint("svc", "127.0.0.1", 1)  # nothing listens: refused at once
        hc.set_endpoints([ep, other])
        with anyio.fail_after(5):
            while hc.is_healthy(other):
                await hc.wait_changed()
        assert hc.is_healthy(ep) and hc.healthy([ep, other]) == [ep]
        answer[0] = 503
        with anyio.fail_after(5):
            await hc.wait_changed()
        assert not hc.is_healthy(ep)
        assert hc.healthy([ep, other]) == [ep, other]  # all down: route to all (panic)
        answer[0] = 200
        with anyio.fail_after(5):
            await hc.wait_changed()
        assert hc.is_healthy(ep)
        assert hc.statistics().endpoints == 2 and hc.statistics().unhealthy == 1


@pytest.mark.anyio
async def test_a_probe_slower_than_the_timeout_fails() -> None:
    async def never(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    cfg = HealthCheckConfig(kind="http", interval=0.01, timeout=0.05, unhealthy_threshold=1)
    async with serving(never) as ep, HealthChecker(cfg) as hc:
        hc.set_endpoints([ep])
        with anyio.fail_after(5):
            await hc.wait_changed()
        assert not hc.is_healthy(ep)


@pytest.mark.anyio
async def test_endpoints_dropped_by_the_registry_stop_being_probed() -> None:
    a, b = Endpoint("svc", "h", 1), Endpoint("svc", "h", 2)
    a_probed, b_probed_thrice = anyio.Event(), anyio.Event()
    after_drop: list[Endpoint] = []
    dropped = False

    async def prober(ep: Endpoint) -> bool:
        if ep == a:
            assert not dropped, "probed after removal"
            a_probed.set()
        elif dropped:
            after_drop.append(ep)
            if len(after_drop) == 3:
                b_probed_thrice.set()
        return True

    async with HealthChecker(HealthCheckConfig(interval=0.01), prober=prober) as hc:
        hc.set_endpoints([a, b])
        with anyio.fail_after(5):
            await a_probed.wait()
        hc.set_endpoints([b])
        dropped = True
        with anyio.fail_after(5):
            await b_probed_thrice.wait()
    with pytest.raises(RuntimeError):
        hc.set_endpoints([a])
