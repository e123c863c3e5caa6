"""One trace through SDK -> sidecar -> sidecar -> SDK, for HTTP/1.1, gRPC, Bolt and Dubbo.

Four runtimes in this process (two SDK apps in sidecar mode, two sidecars), each
with tracing on at 100 %. The consumer's sidecar also finds a dead instance of the
service, so some call's first try fails to connect and is retried: that try is a
span of its own. Each test reads the spans every runtime buffered and checks the
tree: one trace id, and each hop the child of the one before.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import attrs
import httpx
import pytest
from tests.protocols.grpc.grpc_support import Peers, generate
from tracing_support import TRACING, sidecar

import sofamesh
from sofamesh.sidecar.app import Sidecar
from sofamesh.tracing import Span

pytestmark = pytest.mark.anyio


def sdk(app: str, car: Sidecar) -> Any:
    cfg = {"app": app, "mode": "sidecar", "sidecar": str(car.bound["admin"]), "tracing": TRACING}
    return sofamesh.open_mesh(cfg, env={})


@asynccontextmanager
async def mesh_of_four(
    protocol: str, service: str, serve: Callable[[Any], Any]
) -> AsyncIterator[tuple[Any, list[Any]]]:
    """The consumer's SDK and the four runtimes, consumer first; a dead instance published."""
    http = {"protocol": "http", "listen": "127.0.0.1:0"}  # the SDK's sidecar client needs it
    own = {"protocol": protocol, "listen": "127.0.0.1:0"}
    out = [http] if protocol == "http" else [http, own]
    async with AsyncExitStack() as stack:
        shop = await stack.enter_async_context(sidecar({"app": "shop", "outbound": out}))
        orders = await stack.enter_async_context(
            sidecar(
                {
                    "app": "orders",
                    "inbound": [own],
                    "outbound": [http],
                    "local_api": {"services": ["*"]},
                }
            )
        )
        provider = await stack.enter_async_context(sdk("orders-app", orders))
        await stack.enter_async_context(serve(provider))
        consumer = await stack.enter_async_context(sdk("shop-app", shop))
        [live] = [ep for ep in orders._published.values() if ep.service == service]
        dead = attrs.evolve(live, port=await dead_port(), meta=dict(live.meta))
        await orders.runtime.registry.publish(dead)
        yield consumer, [consumer, shop, orders, provider]


async def dead_port() -> int:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


def drain(holders: list[Any]) -> list[tuple[str, Span]]:
    """Every span buffered, labelled by the runtime that made it."""
    names = ["shop-app", "shop", "orders", "orders-app"]
    return [
        (n, s) for n, h in zip(names, holders, strict=True) for s in h.runtime.spans.take(10_000)
    ]


def check_traces(spans: list[tuple[str, Span]], calls: int) -> None:
    """`calls` traces, each a chain of hops, and at least one with a retried try."""
    by_trace: dict[str, list[tuple[str, Span]]] = {}
    for who, span in spans:
        by_trace.setdefault(span.trace_id, []).append((who, span))
    assert len(by_trace) == calls
    retried = 0
    for trace in by_trace.values():
        ids = {s.span_id: (who, s) for who, s in trace}
        # The app's call is the root (the Bolt SDK names a SOFATracer parent no span here has).
        [root] = [s for w, s in trace if w == "shop-app"]
        assert root.kind == "client" and root.parent_id not in ids
        [hop] = [s for w, s in trace if w == "shop" and s.kind == "internal"]
        assert hop.parent_id == root.span_id
        tries = sorted(
            (s for w, s in trace if w == "shop" and s.kind == "client"), key=lambda s: s.start
        )
        assert all(t.parent_id == hop.span_id for t in tries)
        assert tries[-1].ok and all(not t.ok for t in tries[:-1])
        retried += len(tries) > 1
        [inbound] = [s for w, s in trace if w == "orders"]
        assert (inbound.kind, inbound.parent_id) == ("server", tries[-1].span_id)
        [app] = [s for w, s in trace if w == "orders-app"]
        assert (app.kind, app.parent_id) == ("server", inbound.span_id)
        assert ids[app.parent_id][0] == "orders"
        assert root.start <= hop.start <= tries[0].start <= inbound.start <= app.start
        assert app.end <= inbound.end <= hop.end <= root.end
        if len(tries) > 1:
            assert hop.attributes["sofamesh.retries"] == 1
    assert retried >= 1


async def calls(n: int, call: Callable[[], Awaitable[None]]) -> None:
    with anyio.fail_after(20):
        for _ in range(n):
            await call()


async def test_http() -> None:
    service = f"orders-{uuid.uuid4().hex[:8]}"

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with mesh_of_four(
        "http", service, lambda m: m.serve_asgi(asgi, [service], lifespan=False)
    ) as (
        consumer,
        holders,
    ):
        async with httpx.AsyncClient(transport=consumer.httpx_transport()) as client:

            async def call() -> None:
                assert (await client.get(f"http://{service}/x")).status_code == 200

            await calls(4, call)
        check_traces(drain(holders), 4)


class Echo:
    def echo(self, value: Any) -> Any:
        return value


async def test_bolt() -> None:
    iface = f"com.example.T{uuid.uuid4().hex[:8]}"
    service = f"{iface}:1.0"
    async with mesh_of_four("bolt", service, lambda m: m.serve_bolt(Echo(), iface)) as (
        consumer,
        holders,
    ):
        client = consumer.bolt_consumer(iface)

        async def call() -> None:
            assert await client.echo("hi") == "hi"

        await calls(4, call)
        check_traces(drain(holders), 4)


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Peers:
    return Peers(generate(tmp_path_factory.mktemp("tracing_stubs")))


async def test_grpc(stubs: Peers) -> None:
    mods = stubs.mods

    class Echo(mods["echo_grpc"].EchoBase):  # type: ignore[misc, name-defined]
        async def Unary(self, stream: Any) -> None:
            await stream.send_message(await stream.recv_message())

        ServerStream = ClientStream = Bidi = Unary  # not called here

    async with mesh_of_four("grpc", "sofamesh.test.Echo", lambda m: m.serve_grpc([Echo()])) as (
        consumer,
        holders,
    ):
        stub = mods["echo_grpc"].EchoStub(consumer.grpc_channel())

        async def call() -> None:
            reply = await stub.Unary(stubs.echo.Msg(text="hi"), timeout=5)
            assert reply.text == "hi"

        await calls(4, call)
        check_traces(drain(holders), 4)


async def test_dubbo() -> None:
    iface = f"com.example.D{uuid.uuid4().hex[:8]}"
    async with mesh_of_four("dubbo", iface, lambda m: m.serve_dubbo(Echo(), interface=iface)) as (
        consumer,
        holders,
    ):
        client = consumer.dubbo_consumer(iface)

        async def call() -> None:
            assert await client.echo("hi") == "hi"

        await calls(4, call)
        check_traces(drain(holders), 4)
