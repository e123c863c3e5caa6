"""OTLP/HTTP export: `ExportTraceServiceRequest` protobufs POSTed to `/v1/traces`.

Needs the `otel` extra (`pip install sofamesh[otel]`: `opentelemetry-proto`, the
official generated messages). The mesh's own HTTP/1.1 client carries the POST, so
export opens no socket of its own and needs no OpenTelemetry SDK (whose batch
processor runs a thread; here the runtime's task group owns the one export task).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.tracing.export import ExportError
from sofamesh.tracing.span import Span
from sofamesh.transport.errors import TransportError

Post = Callable[[str, int, HttpRequest], Awaitable[HttpResponse]]
_KINDS = {"internal": 1, "server": 2, "client": 3}  # OTLP's SpanKind numbers
_OK, _ERROR = 1, 2  # OTLP's Status.StatusCode numbers


def available() -> bool:
    """Whether the `otel` extra is installed."""
    try:
        return importlib.util.find_spec("opentelemetry.proto") is not None
    except ModuleNotFoundError:  # no `opentelemetry` package at all
        return False


def encode(spans: Sequence[Span], service_name: str, wall_offset: float) -> bytes:
    """One `ExportTraceServiceRequest` holding `spans`, monotonic times moved to the epoch.

    Messages are built whole by their constructors: faster on protobuf's upb backend
    than setting fields one by one.
    """
    pb = _messages()
    resource = pb.Resource(attributes=[_attribute(pb, "service.name", service_name)])
    scope = pb.ScopeSpans(
        scope=pb.InstrumentationScope(name="sofamesh"),
        spans=[_span(pb, s, wall_offset) for s in spans],
    )
    request = pb.ExportTraceServiceRequest(
        resource_spans=[pb.ResourceSpans(resource=resource, scope_spans=[scope])]
    )
    return bytes(request.SerializeToString())


@functools.cache
def _messages() -> SimpleNamespace:
    """The generated message classes, imported once (only with the `otel` extra)."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    return SimpleNamespace(
        ExportTraceServiceRequest=trace_service_pb2.ExportTraceServiceRequest,
        InstrumentationScope=common_pb2.InstrumentationScope,
        AnyValue=common_pb2.AnyValue,
        KeyValue=common_pb2.KeyValue,
        Resource=resource_pb2.Resource,
        ResourceSpans=trace_pb2.ResourceSpans,
        ScopeSpans=trace_pb2.ScopeSpans,
        Span=trace_pb2.Span,
        Status=trace_pb2.Status,
    )


def _span(pb: Any, span: Span, wall_offset: float) -> Any:
    return pb.Span(
        trace_id=bytes.fromhex(span.trace_id),
        span_id=bytes.fromhex(span.span_id),
        parent_span_id=bytes.fromhex(span.parent_id),
        trace_state=span.context.tracestate,
        name=span.name,
        kind=_KINDS[span.kind],
        start_time_unix_nano=int((span.start + wall_offset) * 1e9),
        end_time_unix_nano=int((span.end + wall_offset) * 1e9),
        attributes=[_attribute(pb, k, v) for k, v in span.attributes.items()],
        status=pb.Status(code=_OK if span.ok else _ERROR, message=span.status_message),
    )


def _attribute(pb: Any, key: str, value: str | int) -> Any:
    if isinstance(value, int):
        return pb.KeyValue(key=key, value=pb.AnyValue(int_value=value))
    return pb.KeyValue(key=key, value=pb.AnyValue(string_value=value))


class OtlpHttpExporter:
    """POSTs each batch to `url` (`http://collector:4318/v1/traces`)."""

    def __init__(self, url: str, post: Post, service_name: str, wall_offset: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 4318
        self._path = parts.path or "/v1/traces"
        self._authority = parts.netloc.encode()
        self._post = post
        self._service = service_name
        self._offset = wall_offset

    async def export(self, spans: Sequence[Span]) -> None:
        body = encode(spans, self._service, self._offset)
        headers = [
            (b"host", self._authority),
            (b"content-type", b"application/x-protobuf"),
            (b"content-length", b"%d" % len(body)),
        ]
        try:
            response = await self._post(
                self._host, self._port, HttpRequest("POST", self._path, headers, body)
            )
        except (TransportError, OSError) as exc:
            raise ExportError(f"{self._host}:{self._port}: {exc}") from None
        if response.status != 200:
            raise ExportError(f"{self._host}:{self._port}{self._path} answered {response.status}")
