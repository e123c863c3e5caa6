"""Real peers: a grpcio client and server traced by the OpenTelemetry SDK, two sidecars between.

The client's span (OpenTelemetry's W3C propagator writes `traceparent` into the
call's metadata) is the parent of the consumer sidecar's span; the provider
sidecar's span is the parent of the server's span, which OpenTelemetry continues
from the metadata the sidecar wrote. One trace id from end to end.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import anyio
import anyio.to_thread
import grpc
import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.protocols.grpc.grpc_support import Peers, generate
from tracing_support import sidecar

pytestmark = pytest.mark.anyio
SERVICE = "sofamesh.test.Echo"


@pytest.fixture(scope="module")
def otel_stubs(tmp_path_factory: pytest.TempPathFactory) -> Peers:
    return Peers(generate(tmp_path_factory.mktemp("otel_stubs")))


def otel() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("interop"), exporter


def grpcio_server(stubs: Peers, tracer: trace.Tracer) -> tuple[grpc.Server, int]:
    class Echo(stubs.mods["echo_pb2_grpc"].EchoServicer):  # type: ignore[misc, name-defined]
        def Unary(self, request: Any, context: Any) -> Any:
            parent = propagate.extract(dict(context.invocation_metadata()))
            with tracer.start_as_current_span("server", context=parent, kind=trace.SpanKind.SERVER):
                return stubs.echo.Msg(text=request.text)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    stubs.mods["echo_pb2_grpc"].add_EchoServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


async def test_grpcio_with_opentelemetry_on_both_ends(otel_stubs: Peers) -> None:
    tracer, exported = otel()
    server, port = grpcio_server(otel_stubs, tracer)
    grpc_in = {"protocol": "grpc", "listen": "127.0.0.1:0"}
    upstream = {**grpc_in, "upstream": f"127.0.0.1:{port}", "services": [SERVICE]}
    try:
        async with (
            sidecar({"app": "shop", "outbound": [grpc_in]}) as shop,
            sidecar({"app": "orders", "inbound": [upstream]}) as orders,
        ):

            def call() -> str:
                with (
                    tracer.start_as_current_span("client", kind=trace.SpanKind.CLIENT),
                    grpc.insecure_channel(str(shop.bound["outbound[0]"])) as channel,
                ):
                    carrier: dict[str, str] = {}
                    propagate.inject(carrier)
                    stub = otel_stubs.echo_stub(channel)
                    reply = stub.Unary(
                        otel_stubs.echo.Msg(text="hi"), metadata=list(carrier.items()), timeout=10
                    )
                    return str(reply.text)

            with anyio.fail_after(30):
                assert await anyio.to_thread.run_sync(call) == "hi"
            ours = [*shop.runtime.spans.take(100), *orders.runtime.spans.take(100)]  # type: ignore[union-attr]
    finally:
        server.stop(0).wait()
    theirs = {s.name: s for s in exported.get_finished_spans()}
    client, far = theirs["client"], theirs["server"]
    hex_id = f"{client.context.trace_id:032x}"
    assert {s.trace_id for s in ours} == {
        hex_id
    } and far.context.trace_id == client.context.trace_id
    [hop] = [s for s in ours if s.kind == "internal"]
    [attempt] = [s for s in ours if s.kind == "client"]
    [inbound] = [s for s in ours if s.kind == "server"]
    assert hop.parent_id == f"{client.context.span_id:016x}"
    assert (attempt.parent_id, inbound.parent_id) == (hop.span_id, attempt.span_id)
    assert far.parent is not None and f"{far.parent.span_id:016x}" == inbound.span_id
