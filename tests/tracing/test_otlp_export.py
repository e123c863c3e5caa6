"""Export over OTLP/HTTP to a receiver the test runs, decoding with the official protos."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import h11
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from sofamesh.config import load_config
from sofamesh.sidecar.app import Sidecar
from sofamesh.tracing import Span, SpanBuffer, SpanContext, SpanExport
from sofamesh.tracing.otlp import encode

pytestmark = pytest.mark.anyio


class Receiver:
    """An OTLP/HTTP trace receiver: one `ExportTraceServiceRequest` per POST /v1/traces."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, ExportTraceServiceRequest]] = []
        self.arrived = anyio.Event()
        self.status = 200

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive(65536))
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return  # the exporter closed its connection
                    continue
                if isinstance(event, h11.Request):
                    head, body = event, b""
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    await self._answer(conn, stream, head, body)
                    conn.start_next_cycle()
                else:
                    return

    async def _answer(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream, head: Any, body: bytes
    ) -> None:
        ctype = dict(head.headers).get(b"content-type", b"").decode()
        request = ExportTraceServiceRequest.FromString(body)
        self.requests.append((head.target.decode(), ctype, request))
        self.arrived.set()
        out = ExportTraceServiceResponse().SerializeToString()
        headers = [("content-type", "application/x-protobuf"), ("content-length", str(len(out)))]
        await stream.send(conn.send(h11.Response(status_code=self.status, headers=headers)))
        await stream.send(conn.send(h11.Data(data=out)) + conn.send(h11.EndOfMessage()))

    def spans(self) -> list[Any]:
        return [
            s
            for _, _, r in self.requests
            for rs in r.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    rx = Receiver()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, rx.handle)
        yield rx, listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def test_a_sidecars_spans_reach_the_receiver() -> None:
    async def asgi_free_upstream(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    up = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    up_port = up.extra(anyio.abc.SocketAttribute.local_port)
    async with receiver() as (rx, port), up, anyio.create_task_group() as tg:
        tg.start_soon(up.serve, asgi_free_upstream)
        tracing = {
            "enabled": True, "sample_ratio": 1.0, "export_interval": 3600,
            "otlp_endpoint": f"http://127.0.0.1:{port}/v1/traces", "service_name": "web-mesh",
        }  # fmt: skip
        inbound = {"protocol": "http", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{up_port}",
                   "services": ["web"]}  # fmt: skip
        cfg = {"app": "web", "registry": "memory://", "inbound": [inbound], "tracing": tracing}
        car = Sidecar(load_config(cfg, env={}))
        await tg.start(car.run)
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        async with httpx.AsyncClient() as client:
            r = await client.get(
                f"http://{car.bound['inbound[0]']}/hello",
                headers={"host": "web", "traceparent": parent, "x-sofamesh-caller": "shop"},
            )
        assert r.status_code == 200
        assert rx.requests == []  # the interval is an hour: what arrives comes from the exit flush
        car.stop()
        await car.wait_stopped()
        with anyio.fail_after(5):
            await rx.arrived.wait()
        tg.cancel_scope.cancel()
    [(target, ctype, request)] = rx.requests
    assert (target, ctype) == ("/v1/traces", "application/x-protobuf")
    resource = {a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes}
    assert resource == {"service.name": "web-mesh"}
    [span] = rx.spans()
    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert span.kind == 2  # SERVER
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["rpc.service"].string_value == "web"
    assert attributes["sofamesh.caller"].string_value == "shop"
    assert attributes["sofamesh.code"].int_value == 200
    assert span.status.code == 1  # OK
    assert 0 < span.end_time_unix_nano - span.start_time_unix_nano < 5e9


class Refusing:
    def __init__(self) -> None:
        self.batches: list[int] = []

    async def export(self, spans: Any) -> None:
        from sofamesh.tracing import ExportError

        self.batches.append(len(spans))
        raise ExportError("collector said 503")


def span(i: int) -> Span:
    return Span(
        f"s{i}", "server", SpanContext(f"{i + 1:032x}", f"{i + 1:016x}", True), "", 1.0, 2.0
    )


async def test_a_full_buffer_drops_and_counts_and_a_failing_collector_costs_nothing_more() -> None:
    buffer = SpanBuffer(3)
    for i in range(5):
        buffer.put(span(i))
    assert buffer.statistics() == {"buffered": 3, "dropped": 2, "exported": 0, "failed": 0}
    exporter = Refusing()
    export = SpanExport(buffer, exporter, interval=1, batch=2, timeout=1)
    await export.flush()
    assert exporter.batches == [2]  # the failed batch is dropped; the rest waits
    assert buffer.statistics() == {"buffered": 1, "dropped": 2, "exported": 0, "failed": 2}


def test_encoding_keeps_ids_times_and_error_status() -> None:
    s = span(0)
    s.ok, s.status_message = False, "no_endpoint"
    s.attributes = {"rpc.service": "orders", "sofamesh.retries": 2}
    request = ExportTraceServiceRequest.FromString(encode([s], "shop", wall_offset=1_000.0))
    [out] = request.resource_spans[0].scope_spans[0].spans
    assert (out.start_time_unix_nano, out.end_time_unix_nano) == (1_001 * 10**9, 1_002 * 10**9)
    assert (out.status.code, out.status.message) == (2, "no_endpoint")
    assert out.parent_span_id == b""
    assert {a.key: a.value.int_value for a in out.attributes}["sofamesh.retries"] == 2


def test_without_the_extra_an_endpoint_is_a_config_error_and_ids_still_propagate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sofamesh.config.structure import ConfigError
    from sofamesh.runtime import Runtime
    from sofamesh.tracing import otlp

    monkeypatch.setattr(otlp, "available", lambda: False)
    base = {"app": "web", "registry": "memory://", "tracing": {"enabled": True}}
    with pytest.raises(ConfigError, match=r"otel extra"):
        cfg = {
            **base,
            "tracing": {"enabled": True, "otlp_endpoint": "http://127.0.0.1:1/v1/traces"},
        }
        Runtime(load_config(cfg, env={}))
    assert Runtime(load_config(base, env={})).tracer is not None  # spans, no export


async def test_the_runtimes_export_task_sends_while_running() -> None:
    from sofamesh.runtime import Runtime

    async with receiver() as (rx, port):
        tracing = {"enabled": True, "export_interval": 0.05,
                   "otlp_endpoint": f"http://127.0.0.1:{port}/v1/traces"}  # fmt: skip
        cfg = load_config({"app": "web", "registry": "memory://", "tracing": tracing}, env={})
        async with Runtime(cfg) as rt:
            assert rt.spans is not None
            rt.spans.put(span(7))
            with anyio.fail_after(10):
                await rx.arrived.wait()  # before the runtime closes: the task's own round
        # Closing waited for the batch in flight instead of cancelling it.
        assert rt.spans.statistics()["exported"] == 1
    [got] = rx.spans()
    assert got.name == "s7"
