"""The package's names load from their modules on first use (a sidecar with tracing off
loads none of them), and are the modules' own objects."""

from __future__ import annotations

import json

import pytest
from tests.fresh_python import run_python

import sofamesh.tracing
from sofamesh.tracing import export, propagation, span, tracer

FIRST_TRACE_ID = """
import json, sys
from sofamesh.model import Headers, Invocation
from sofamesh.observability.call import trace_id
def loaded():
    return sorted(m for m in sys.modules if m.startswith("sofamesh.tracing"))
before = loaded()
plain = trace_id(Invocation(protocol="http", service="s", method="m", headers=Headers()))
traced = Invocation(protocol="http", service="s", method="m", headers=Headers([
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]))
print(json.dumps({"before": before, "plain": plain, "after_plain": loaded(),
                  "traced": trace_id(traced), "after": loaded()}))
"""


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("ExportError", export),
        ("SpanBuffer", export),
        ("SpanExport", export),
        ("Propagator", propagation),
        ("Span", span),
        ("SpanContext", span),
        ("Sampler", tracer),
        ("Tracer", tracer),
    ],
)
def test_each_name_is_its_modules(name: str, module: object) -> None:
    assert getattr(sofamesh.tracing, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        sofamesh.tracing.Nothing  # noqa: B018


def test_the_access_logs_trace_id_loads_the_readers_with_the_first_traced_call() -> None:
    seen = json.loads(run_python(FIRST_TRACE_ID))
    assert seen["before"] == seen["after_plain"] == []
    assert seen["plain"] == ""
    assert seen["traced"] == "0af7651916cd43dd8448eb211c80319c"
    # The readers and the span context they make; not the tracer, its export or filters.
    assert seen["after"] == [
        "sofamesh.tracing",
        "sofamesh.tracing.propagation",
        "sofamesh.tracing.span",
    ]
