"""Distributed tracing: spans per mesh hop, trace context on the wire, export (observability.md)."""

from sofamesh.tracing.export import ExportError, SpanBuffer, SpanExport
from sofamesh.tracing.propagation import Propagator
from sofamesh.tracing.span import Span, SpanContext
from sofamesh.tracing.tracer import Sampler, Tracer

__all__ = [
    "ExportError",
    "Propagator",
    "Sampler",
    "Span",
    "SpanBuffer",
    "SpanContext",
    "SpanExport",
    "Tracer",
]
