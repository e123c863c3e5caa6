"""Bolt through sidecars, in this process: routing on the header map, ids re-mapped per
upstream connection, heartbeats answered locally, failures as Bolt statuses, an upstream
dying mid-call, and SDK apps in sidecar mode on both sides."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from bolt_support import (
    RawPeer,
    outbound,
    raw_client,
    raw_server,
    sidecar_config,
    sidecars,
)

import sofamesh
from sofamesh.codecs.bolt import (
    FrameKind,
    RequestFrame,
    ResponseFrame,
    ResponseStatus,
    heartbeat,
    request,
)
from sofamesh.codecs.bolt.sofarpc import SofaRequest, decode_response, encode_request, error_of
from sofamesh.config import Address
from sofamesh.endpoint import Endpoint
from sofamesh.protocols.bolt.mapping import ERROR_HEADER
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.sdk.bolt import current_call

pytestmark = pytest.mark.anyio


class App:
    """The app behind a provider sidecar (served by the SDK on a private registry)."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    def echo(self, value: Any) -> Any:
        return value

    def whoami(self) -> list[str]:
        call = current_call.get()
        return [call.caller, call.method]

    async def wait(self) -> str:
        await self.release.wait()
        return "released"


@asynccontextmanager
async def app(obj: object, service: str) -> AsyncIterator[Address]:
    """`obj` served as `service` on a port of its own, published only where nobody looks."""
    iface, version = service.rsplit(":", 1)
    async with (
        sofamesh.open_mesh(
            {"app": "app", "registry": "memory://"}, env={}, registry=MemoryRegistry(MemoryHub())
        ) as m,
        m.serve_bolt(obj, iface, version=version) as served,
    ):
        yield served.address


def unique_service() -> str:
    return f"com.example.S{uuid.uuid4().hex[:10]}:1.0"


def sofa_request(rid: int, service: str, method: str, *args: str, **kw: Any) -> RequestFrame:
    """A request as sofa-rpc-node writes it: only the `service` header; the method is in
    the body."""
    req = SofaRequest(method, ["java.lang.String"] * len(args), service, None, {})
    return request(rid, encode_request(req, list(args)), headers={"service": service}, **kw)


async def answer(peer: RawPeer) -> ResponseFrame:
    frame = await peer.next_frame()
    assert isinstance(frame, ResponseFrame), frame
    return frame


def value_of(frame: ResponseFrame) -> Any:
    assert frame.status == ResponseStatus.SUCCESS, error_of(frame.body)
    return decode_response(frame.body).appResponse


@asynccontextmanager
async def meshed(service: str, obj: object, **consumer: Any) -> AsyncIterator[Address]:
    """consumer sidecar -> provider sidecar -> `obj`; yields the consumer's outbound."""
    async with app(obj, service) as upstream:
        prov = sidecar_config(
            "prov", inbound=[{"protocol": "bolt", "listen": "127.0.0.1:0",
                              "upstream": str(upstream), "services": [service]}],
        )  # fmt: skip
        cons = sidecar_config(
            "shop", outbound=[{"protocol": "bolt", "listen": "127.0.0.1:0"}], **consumer
        )
        async with sidecars(prov, cons) as (_, shop):
            yield outbound(shop)


async def test_two_sidecars_carry_a_plain_bolt_client_to_an_app() -> None:
    service = unique_service()
    async with meshed(service, App()) as out, raw_client(out.port) as client:
        await client.send(sofa_request(1234, service, "whoami"))
        got = await answer(client)
        assert got.request_id == 1234
        assert value_of(got) == ["shop", "whoami"]  # the caller, as the consumer sidecar vouched


async def test_request_ids_are_remapped_per_upstream_connection() -> None:
    service = unique_service()
    async with (
        meshed(service, App()) as out,
        raw_client(out.port) as one,
        raw_client(out.port) as two,
    ):
        await one.send(sofa_request(7, service, "echo", "from one"))
        await two.send(sofa_request(7, service, "echo", "from two"))  # the same id
        a, b = await answer(one), await answer(two)
        assert (a.request_id, value_of(a)) == (7, "from one")
        assert (b.request_id, value_of(b)) == (7, "from two")


async def test_heartbeats_and_v2_frames_are_handled_at_the_sidecar() -> None:
    service = unique_service()
    async with meshed(service, App()) as out, raw_client(out.port) as client:
        await client.send(heartbeat(3))
        ack = await client.next_frame()
        assert ack is not None and (ack.kind, ack.request_id) == (FrameKind.HEARTBEAT_ACK, 3)
        await client.send(sofa_request(4, service, "echo", "v2", version=2, crc=True))
        got = await answer(client)
        assert (got.version, got.has_crc, value_of(got)) == (2, True, "v2")


async def test_mesh_failures_become_bolt_statuses_a_client_can_read() -> None:
    service = unique_service()
    async with meshed(service, App()) as out, raw_client(out.port) as client:
        await client.send(sofa_request(1, "com.example.Nobody:1.0", "echo", "x"))
        missing = await answer(client)
        assert missing.status == ResponseStatus.SERVER_EXCEPTION
        assert missing.headers() == ((ERROR_HEADER, "no_endpoint"),)
        assert "no healthy endpoint for service com.example.Nobody:1.0" in error_of(missing.body)[0]

        await client.send(request(2, b"\x00not hessian"))  # no service anywhere
        unnamed = await answer(client)
        assert unnamed.status == ResponseStatus.CODEC_EXCEPTION
        assert "names no service" in error_of(unnamed.body)[0]

        await client.send(sofa_request(3, service, "wait", timeout_ms=100))
        late = await answer(client)
        assert late.status == ResponseStatus.TIMEOUT
        assert error_of(late.body)[0].startswith("sofamesh: ")


async def test_oneway_goes_through_without_an_answer() -> None:
    service = unique_service()
    seen = anyio.Event()

    class Sink:
        def put(self, _value: str) -> None:
            seen.set()

    async with meshed(service, Sink()) as out, raw_client(out.port) as client:
        await client.send(sofa_request(1, service, "put", "x", oneway=True), heartbeat(2))
        ack = await client.next_frame()
        assert ack is not None and ack.kind is FrameKind.HEARTBEAT_ACK  # and nothing else
        await seen.wait()


async def test_an_upstream_dying_mid_call_fails_only_its_calls_and_is_ejected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = unique_service()
    healthy = App()
    policy = {"policy": {"outlier": {"consecutive_failures": 1}, "connect_retries": 0}}
    cons = sidecar_config(
        "shop", outbound=[{"protocol": "bolt", "listen": "127.0.0.1:0"}], **policy
    )
    async with (
        app(healthy, service) as good,
        raw_server() as (bad_port, accepted),
        MemoryRegistry() as registry,
        sidecars(cons) as (shop,),
        raw_client(outbound(shop).port) as client,
    ):
        bad = Endpoint(service=service, host="127.0.0.1", port=bad_port, protocol="bolt")
        await registry.publish(bad)
        await registry.publish(Endpoint(service, "127.0.0.1", good.port, protocol="bolt"))
        # Round robin: the calls alternate between the two; both wait in their provider.
        await client.send(*(sofa_request(i, service, "wait") for i in (1, 2)))
        dying = await accepted.receive()
        assert await dying.next_frame() is not None
        await dying.stream.aclose()  # the bad provider dies with one call in flight
        failed = await answer(client)
        assert failed.status == ResponseStatus.SERVER_EXCEPTION
        assert failed.headers() == ((ERROR_HEADER, "upstream_reset"),)
        healthy.release.set()
        ok = await answer(client)
        assert ok.request_id != failed.request_id and value_of(ok) == "released"
        cluster = shop.runtime.clusters.get(service)  # type: ignore[union-attr]
        assert cluster.outlier.is_ejected(bad.key, shop.runtime.clock.now())
        for rid in range(3, 6):  # everything now goes to the healthy one
            await client.send(sofa_request(rid, service, "echo", "again"))
            assert value_of(await answer(client)) == "again"
    assert f"ejected 127.0.0.1:{bad_port}" in caplog.text


async def test_sdk_apps_in_sidecar_mode_on_both_sides() -> None:
    service = unique_service()
    iface = service.rsplit(":", 1)[0]
    # Bolt listeners only: the SDK talks to each sidecar's API on its admin address.
    prov = sidecar_config(
        "prov",
        admin="127.0.0.1:0",
        inbound=[{"protocol": "bolt", "listen": "127.0.0.1:0"}],
        local_api={"services": ["com.example.*"]},  # what its app may publish
    )
    shop = sidecar_config(
        "shop", admin="127.0.0.1:0", outbound=[{"protocol": "bolt", "listen": "127.0.0.1:0"}]
    )
    async with sidecars(prov, shop) as (prov_car, shop_car):

        def sidecar_mode(app_name: str, car: Any) -> Any:
            cfg = {"app": app_name, "mode": "sidecar", "sidecar": str(car.bound["admin"])}
            return sofamesh.open_mesh(cfg, env={})

        async with (
            sidecar_mode("prov-app", prov_car) as provider,
            provider.serve_bolt(App(), iface),
            sidecar_mode("shop-app", shop_car) as consumer,
        ):
            assert (service, "bolt") in prov_car.registrations
            client = consumer.bolt_consumer(iface)
            assert await client.whoami() == ["shop", "whoami"]  # the sidecar vouches
            assert await client.echo("through both") == "through both"


async def test_governance_rules_apply_to_bolt_calls() -> None:
    service = unique_service()
    inbound_rules = {
        "auth": {
            "inbound": {"rules": [{"name": "callers", "service": service, "allow": ["shop"]}]}
        },
        "rate_limits": [{"name": "echo-qps", "service": service, "method": "echo", "count": 1}],
    }
    outbound_rules = {
        "routes": [
            {"name": "closed", "service": "com.example.Legacy:1.0",
             "direct_response": {"status": "unavailable", "code": 503, "body": "back at 14:00"}},
            {"name": "canned", "service": "com.example.Canned:1.0",
             "direct_response": {"body": "cached answer"}},
        ]
    }  # fmt: skip
    async with app(App(), service) as upstream:
        prov = sidecar_config(
            "prov", rules=inbound_rules,
            inbound=[{"protocol": "bolt", "listen": "127.0.0.1:0", "upstream": str(upstream),
                      "services": [service]}],
        )  # fmt: skip
        out = [{"protocol": "bolt", "listen": "127.0.0.1:0"}]
        shop = sidecar_config("shop", outbound=out, rules=outbound_rules)
        intruder = sidecar_config("intruder", outbound=out)
        async with (
            sidecars(prov, shop, intruder) as (_, shop_car, intruder_car),
            raw_client(outbound(shop_car).port) as client,
            raw_client(outbound(intruder_car).port) as stranger,
        ):
            await stranger.send(sofa_request(1, service, "echo", "x"))
            denied = await answer(stranger)
            assert denied.status == ResponseStatus.SERVER_EXCEPTION
            assert denied.headers() == ((ERROR_HEADER, "unauthorized"),)
            await client.send(*(sofa_request(i, service, "echo", "x") for i in (2, 3)))
            both = [await answer(client), await answer(client)]  # one of them is over the limit
            (passed,) = [a for a in both if a.status == ResponseStatus.SUCCESS]
            (limited,) = [a for a in both if a is not passed]
            assert value_of(passed) == "x"
            assert limited.status == ResponseStatus.SERVER_THREADPOOL_BUSY
            assert limited.headers() == ((ERROR_HEADER, "rate_limited"),)
            await client.send(sofa_request(4, "com.example.Legacy:1.0", "anything"))
            closed = await answer(client)  # an HTTP code in the rule is no Bolt status
            assert closed.status == ResponseStatus.SERVER_THREADPOOL_BUSY
            assert error_of(closed.body)[0] == "sofamesh: back at 14:00"
            await client.send(sofa_request(5, "com.example.Canned:1.0", "anything"))
            assert value_of(await answer(client)) == "cached answer"
