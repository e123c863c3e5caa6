"""Protocols loaded on first use (protocols/lazy.py): one load however many first uses race,
the real support swapped in with no frame of ours left, servers built on first connection."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from sofamesh import protocols
from sofamesh.clock import MonotonicClock
from sofamesh.codecs.bolt.frames import heartbeat
from sofamesh.config import ConfigError, load_config
from sofamesh.config.model import PolicyConfig
from sofamesh.endpoint import Endpoint
from sofamesh.model import Invocation, Status
from sofamesh.protocols import lazy
from sofamesh.protocols.bolt.support import BoltSupport
from sofamesh.protocols.h2.support import H2Support
from sofamesh.runtime import Runtime
from sofamesh.upstream.health import HealthCheckConfig

pytestmark = pytest.mark.anyio


def counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    builds: list[tuple[str, ...]] = []
    real = lazy.make_protocols

    def make(policy: PolicyConfig, clock: Any, names: tuple[str, ...] | None = None) -> Any:
        if names is not None and "http" not in names:
            builds.append(names)
        return real(policy, clock, names)

    monkeypatch.setattr(lazy, "make_protocols", make)
    return builds


def test_the_registry_declares_what_each_class_says() -> None:
    for name, reg in protocols.PROTOCOLS.items():
        cls: Any = protocols.support_class(name)
        assert reg.gateway_codes == cls.gateway_codes, name
        assert reg.endpoint_protocols == cls.endpoint_protocols, name
        assert reg.enforces_deadline == cls.enforces_deadline, name
        assert reg.alpn == cls.alpn, name
        assert protocols.health_probe(name) is cls.health_probe, name


def test_a_family_is_what_plugs_into_one_listener() -> None:
    assert protocols.family("grpc") == ("h2", "grpc", "dubbo")
    assert protocols.family("h2") == protocols.family("dubbo") == ("h2", "grpc", "dubbo")
    assert protocols.family("bolt") == ("bolt",)


async def closed_port() -> int:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    return port


async def test_two_first_calls_at_once_load_once(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = counting_builds(monkeypatch)
    holder = lazy.Holder()
    supports = lazy.lazy_protocols(PolicyConfig(), MonotonicClock(), holder)
    stand_in = supports["bolt"]
    assert isinstance(stand_in, lazy.LazySupport)
    assert isinstance(supports["http"], protocols.support_class("http"))  # the admin's: eager
    port = await closed_port()
    statuses: list[Status] = []

    async def call() -> None:
        inv = Invocation(service="pay", method="m", protocol="bolt", payload=heartbeat(1))
        statuses.append((await stand_in.send("127.0.0.1", port, inv)).status)

    async with holder:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            tg.start_soon(call)
        real = supports["bolt"]
        assert isinstance(real, BoltSupport)
        assert stand_in.send == real.send  # a caller holding the stand-in reaches it directly
        assert stand_in.pool is real.pool  # type: ignore[attr-defined]
        await call()  # loaded: no second build
    assert builds == [("bolt",)]
    assert statuses == [Status.CONNECT_FAILED] * 3


async def test_two_first_connections_at_once_are_both_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds = counting_builds(monkeypatch)
    holder = lazy.Holder()
    supports = lazy.lazy_protocols(PolicyConfig(), MonotonicClock(), holder)
    server = supports["h2"].inbound_server(lambda _service: None, None)
    assert isinstance(server, lazy.LazyServer)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    codes: list[int] = []

    async def get(client: httpx.AsyncClient) -> None:
        codes.append((await client.get(f"http://127.0.0.1:{port}/")).status_code)

    async with holder, anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        assert builds == [] and server.statistics().accepted_connections == 0
        async with (
            httpx.AsyncClient() as one,
            httpx.AsyncClient() as two,
            anyio.create_task_group() as clients,
        ):
            clients.start_soon(get, one)
            clients.start_soon(get, two)
        assert isinstance(supports["h2"], H2Support)
        assert server.statistics().accepted_connections == 2
        await server.drain()
    assert builds == [("h2", "grpc", "dubbo")]
    assert len(codes) == 2 and all(400 <= c < 600 for c in codes)  # answered: no such service


async def test_a_server_drained_before_its_first_connection_loads_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds = counting_builds(monkeypatch)
    holder = lazy.Holder()
    supports = lazy.lazy_protocols(PolicyConfig(), MonotonicClock(), holder)
    server = supports["bolt"].outbound_server(lambda _inv: None, "app", None)  # type: ignore[arg-type, return-value]
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with holder, anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        await server.drain()
    assert builds == []
    assert server.statistics().draining
    with pytest.raises(OSError):  # the listener closed with its serve
        await anyio.connect_tcp("127.0.0.1", port)


async def test_a_probe_loads_its_protocol_on_the_first_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds = counting_builds(monkeypatch)
    holder = lazy.Holder()
    supports = lazy.lazy_protocols(PolicyConfig(), MonotonicClock(), holder)
    server = supports["bolt"].inbound_server(lambda _service: None, None)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    probe = protocols.health_probe("bolt")
    assert probe is not None
    ep = Endpoint(service="pay", host="127.0.0.1", port=port, protocol="bolt")
    async with holder, anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        assert await probe(ep, HealthCheckConfig(kind="bolt"), None)
        await server.drain()
    assert builds == [("bolt",)]


async def test_a_server_cancelled_before_its_first_connection_closes_its_listener() -> None:
    holder = lazy.Holder()
    supports = lazy.lazy_protocols(PolicyConfig(), MonotonicClock(), holder)
    server = supports["dubbo"].inbound_server(lambda _service: None, None)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with holder, anyio.create_task_group() as tg:
        await tg.start(server.serve, listener)
        tg.cancel_scope.cancel()  # as a sidecar's exit does, without a drain
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)


def test_preload_protocols_builds_every_protocol_at_start() -> None:
    """`preload_protocols: true` trades the idle memory for a first request that pays no
    import: the runtime holds every real support, no stand-in."""
    preloaded = Runtime(load_config({"app": "a", "preload_protocols": True}, env={}))
    assert set(preloaded.protocols) == set(protocols.PROTOCOLS)
    assert not any(isinstance(p, lazy.LazySupport) for p in preloaded.protocols.values())
    assert isinstance(preloaded.protocols["bolt"], BoltSupport)
    default = Runtime(load_config({"app": "a"}, env={}))
    assert isinstance(default.protocols["bolt"], lazy.LazySupport)


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_preload_protocols_takes_a_boolean_only(value: object) -> None:
    with pytest.raises(ConfigError, match="preload_protocols: expected bool"):
        load_config({"app": "a", "preload_protocols": value}, env={})
