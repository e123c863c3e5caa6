"""Distributed tracing: spans per mesh hop, trace context on the wire, export (observability.md).

The names below load from their modules on first use, so importing a submodule
(the access log's `propagation`, with the first call that carries a trace id)
does not load the rest: a sidecar with tracing off loads none of it at start.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "ExportError": "export",
    "SpanBuffer": "export",
    "SpanExport": "export",
    "Propagator": "propagation",
    "Span": "span",
    "SpanContext": "span",
    "Sampler": "tracer",
    "Tracer": "tracer",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"sofamesh.tracing.{module}"), name)
    globals()[name] = value  # later reads are a plain global's
    return value
