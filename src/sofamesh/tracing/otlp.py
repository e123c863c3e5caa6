"""OTLP/HTTP export: `ExportTraceServiceRequest` protobufs POSTed to `/v1/traces`.

Needs the `otel` extra (`pip install sofamesh[otel]`: `opentelemetry-proto`, the
official generated messages). The mesh's own HTTP/1.1 client carries the POST, so
export opens no socket of its own and needs no OpenTelemetry SDK (whose batch
processor runs a thread; here the runtime's task group owns the one export task).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.tracing.export import ExportError
from sofamesh.tracing.span import Span
from sofamesh.transport.errors import TransportError

Post = Callable[[str, int, HttpRequest], Awaitable[HttpResponse]]
_KINDS = {"internal": 1, "server": 2, "client": 3}  # OTLP's SpanKind numbers


def available() -> bool:
    """Whether the `otel` extra is installed."""
    try:
        return importlib.util.find_spec("opentelemetry.proto") is not None
    except ModuleNotFoundError:  # no `opentelemetry` package at all
        return False


def encode(spans: Sequence[Span], service_name: str, wall_offset: float) -> bytes:
    """One `ExportTraceServiceRequest` holding `spans`, monotonic times moved to the epoch."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1 import trace_pb2

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(_attribute("service.name", service_name))
    scope = rs.scope_spans.add()
    scope.scope.name = "sofamesh"
    for span in spans:
        out: Any = scope.spans.add()
        out.trace_id = bytes.fromhex(span.trace_id)
        out.span_id = bytes.fromhex(span.span_id)
        if span.parent_id:
            out.parent_span_id = bytes.fromhex(span.parent_id)
        out.trace_state = span.context.tracestate
        out.name = span.name
        out.kind = _KINDS[span.kind]
        out.start_time_unix_nano = int((span.start + wall_offset) * 1e9)
        out.end_time_unix_nano = int((span.end + wall_offset) * 1e9)
        out.attributes.extend(_attribute(k, v) for k, v in span.attributes.items())
        out.status.code = (
            trace_pb2.Status.STATUS_CODE_OK if span.ok else trace_pb2.Status.STATUS_CODE_ERROR
        )
        out.status.message = span.status_message
    return bytes(request.SerializeToString())


def _attribute(key: str, value: str | int) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    any_value = (
        AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    )
    return KeyValue(key=key, value=any_value)


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
