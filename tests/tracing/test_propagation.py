"""Trace context formats: W3C, B3 (single and multi), SOFATracer, read back as written."""

from __future__ import annotations

import pytest

from sofamesh.model import Headers
from sofamesh.tracing.propagation import (
    TRACE_MARK,
    Propagator,
    bolt_entries,
    extract_b3,
    extract_b3multi,
    extract_sofatracer,
    extract_w3c,
    sofa_to_trace_id,
)
from sofamesh.tracing.span import SpanContext

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_w3c_spec_example() -> None:
    h = Headers([("traceparent", f"00-{TRACE}-{SPAN}-01"), ("tracestate", "congo=t61rcWkgMzE")])
    assert extract_w3c(h) == SpanContext(TRACE, SPAN, True, "congo=t61rcWkgMzE")


@pytest.mark.parametrize(
    "value",
    [
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has four fields
        f"00-{TRACE}-{SPAN}-zz",
        "garbage",
    ],
)
def test_w3c_refuses_malformed(value: str) -> None:
    assert extract_w3c(Headers([("traceparent", value)])) is None


def test_w3c_future_version_reads_the_known_fields() -> None:
    ctx = extract_w3c(Headers([("traceparent", f"cc-{TRACE}-{SPAN}-00-what-ever")]))
    assert ctx is not None and (ctx.trace_id, ctx.sampled) == (TRACE, False)


def test_b3_single_and_64_bit_ids() -> None:
    ctx = extract_b3(Headers([("b3", f"a3ce929d0e0e4736-{SPAN}-1-05e3ac9a4f6e3b90")]))
    assert ctx == SpanContext("0" * 16 + "a3ce929d0e0e4736", SPAN, True)
    assert extract_b3(Headers([("b3", "0")])) is None  # a sampling decision alone
    assert extract_b3(Headers([("b3", f"{TRACE}-{SPAN}")])) == SpanContext(TRACE, SPAN, None)


def test_b3_multi_with_debug_flag() -> None:
    h = Headers([("X-B3-TraceId", TRACE), ("X-B3-SpanId", SPAN), ("X-B3-Sampled", "0")])
    assert extract_b3multi(h) == SpanContext(TRACE, SPAN, False)
    h.add("X-B3-Flags", "1")
    ctx = extract_b3multi(h)
    assert ctx is not None and ctx.sampled is True


def test_sofatracer_http_and_bolt_names() -> None:
    sofa = "0a0fe8ec1489998877001234512345"
    http = extract_sofatracer(Headers([("SOFA-TraceId", sofa), ("SOFA-RpcId", "0.1")]), "http")
    assert http is not None
    assert (http.trace_id, http.sofa_trace_id, http.sofa_rpc_id) == (
        sofa.rjust(32, "0"),
        sofa,
        "0.1",
    )
    assert http.sampled is None
    bolt = Headers(
        [("rpc_trace_context.sofaTraceId", sofa), ("rpc_trace_context.sofaRpcId", "0.1")]
    )
    assert extract_sofatracer(bolt, "bolt") == http
    assert extract_sofatracer(bolt, "http") is None  # Bolt's names only in Bolt


def test_sofatracer_odd_ids_hash_to_a_stable_trace_id() -> None:
    assert sofa_to_trace_id("not-hex!") == sofa_to_trace_id("not-hex!")
    assert len(sofa_to_trace_id("not-hex!")) == 32


@pytest.mark.parametrize("fmt", ["w3c", "b3", "b3multi", "sofatracer"])
@pytest.mark.parametrize("protocol", ["http", "bolt"])
def test_each_format_round_trips(fmt: str, protocol: str) -> None:
    p = Propagator([fmt])
    ctx = SpanContext(TRACE, SPAN, True)
    h = Headers()
    p.inject(ctx, h, protocol)
    back = p.extract(h, protocol)
    assert back is not None and back.trace_id == TRACE
    if fmt != "sofatracer":  # SOFATracer names no span and no sampling decision
        assert (back.span_id, back.sampled) == (SPAN, True)


def test_extract_takes_the_first_configured_format_present() -> None:
    other = "1" * 32
    h = Headers([("b3", f"{other}-{SPAN}-1"), ("traceparent", f"00-{TRACE}-{SPAN}-01")])
    first = Propagator(["b3", "w3c"]).extract(h, "http")
    assert first is not None and first.trace_id == other
    second = Propagator(["w3c", "b3"]).extract(h, "http")
    assert second is not None and second.trace_id == TRACE


def test_bolt_injection_is_marked_and_the_last_value_wins() -> None:
    h = Headers(
        [("rpc_trace_context.sofaTraceId", "aaaa"), ("traceparent", f"00-{'1' * 32}-{SPAN}-01")]
    )
    p = Propagator(["w3c", "sofatracer"])
    p.inject(SpanContext(TRACE, SPAN, False, sofa_trace_id="bbbb", sofa_rpc_id="0.2"), h, "bolt")
    mark = h.get(TRACE_MARK)
    assert mark is not None
    # Java's SOFARPC reads the map case-sensitively: the entries come back in its case.
    assert bolt_entries(mark, h) == [
        ("traceparent", f"00-{TRACE}-{SPAN}-00"),
        ("rpc_trace_context.sofaTraceId", "bbbb"),
        ("rpc_trace_context.sofaRpcId", "0.2"),
    ]
    # A map that carries the caller's entries and then a hop's: the hop's are read.
    appended = Headers([*h.items(), ("traceparent", f"00-{'2' * 32}-{SPAN}-01")])
    ctx = extract_w3c(appended)
    assert ctx is not None and ctx.trace_id == "2" * 32
    assert Propagator(["w3c"]).extract(h, "http") is not None
    assert "x-sofamesh-trace-set" not in Headers([("traceparent", "x")])
