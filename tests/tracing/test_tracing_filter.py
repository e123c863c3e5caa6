"""The tracing filters on their own: spans, sampling, errors kept, context passed on."""

from __future__ import annotations

import pytest

from sofamesh.chain import build_chain
from sofamesh.clock import FakeClock
from sofamesh.config.telemetry import TracingConfig
from sofamesh.endpoint import Endpoint
from sofamesh.filters.tracing import AttemptSpanFilter, TracingFilter
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.tracing import Sampler, Span, Tracer
from sofamesh.tracing.propagation import extract_w3c

pytestmark = pytest.mark.anyio

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def tracer(spans: list[Span], **cfg: object) -> Tracer:
    return Tracer(TracingConfig(enabled=True, **cfg), FakeClock(), spans.append, "shop")  # type: ignore[arg-type]


async def test_server_span_continues_the_callers_trace() -> None:
    spans: list[Span] = []
    t = tracer(spans, sample_ratio=0.0)
    seen: list[Headers] = []

    async def app(inv: Invocation) -> Result:
        t.clock.advance(0.25)  # type: ignore[attr-defined]
        seen.append(inv.headers.copy())
        return Result(Status.OK, 200)

    chain = build_chain([TracingFilter(t, "server")], app)
    inv = Invocation(
        "http",
        "orders",
        "GET",
        Headers([("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01")]),
        caller="web",
    )
    await chain(inv)
    [span] = spans
    assert (span.trace_id, span.parent_id, span.kind) == (TRACE, "00f067aa0ba902b7", "server")
    assert span.end - span.start == 0.25
    assert (
        span.attributes["rpc.service"] == "orders" and span.attributes["sofamesh.caller"] == "web"
    )
    # The app sees the mesh's span as its parent, sampled as the caller decided.
    ctx = extract_w3c(seen[0])
    assert ctx is not None and (ctx.span_id, ctx.sampled) == (span.span_id, True)


async def test_unsampled_successes_dropped_failures_kept() -> None:
    spans: list[Span] = []
    t = tracer(spans, sample_ratio=0.0)
    answer = Result(Status.OK, 200)

    async def app(inv: Invocation) -> Result:
        return answer

    chain = build_chain([TracingFilter(t, "server")], app)
    await chain(Invocation("http", "orders", "GET"))
    assert spans == []
    answer = Result.failure(Status.RATE_LIMITED, "orders: 10/s")
    await chain(Invocation("http", "orders", "GET"))
    [span] = spans
    assert not span.ok and span.attributes["sofamesh.rule"] == "rate_limited: orders: 10/s"
    assert not span.context.sampled  # kept, yet passes on "not sampled"
    spans.clear()
    t2 = tracer(spans, sample_ratio=0.0, always_on_errors=False)
    await build_chain([TracingFilter(t2, "server")], app)(Invocation("http", "orders", "GET"))
    assert spans == []


def test_ratio_sampling_decides_by_trace_id_alike_on_every_hop() -> None:
    half = Sampler(0.5, parent_based=False)
    ids = [f"{i:032x}" for i in range(0, 1 << 56, (1 << 56) // 1000)]
    decisions = [half.sampled(i, None) for i in ids]
    assert 400 < sum(decisions) < 600
    assert decisions == [Sampler(0.5, parent_based=False).sampled(i, None) for i in ids]
    assert all(Sampler(1.0, False).sampled(i, None) for i in ids)
    assert not any(Sampler(0.0, False).sampled(i, None) for i in ids)


async def test_attempt_spans_show_each_try_under_the_hop() -> None:
    spans: list[Span] = []
    t = tracer(spans, sample_ratio=1.0)
    eps = [Endpoint("orders", "10.0.0.1", 80), Endpoint("orders", "10.0.0.2", 80)]
    sent: list[str] = []

    async def upstream(inv: Invocation) -> Result:
        ctx = extract_w3c(inv.headers)
        assert ctx is not None
        sent.append(ctx.span_id)
        inv.endpoint = eps[inv.attempt]
        return (
            Result.failure(Status.CONNECT_FAILED, "refused")
            if inv.attempt == 0
            else Result(Status.OK, 200)
        )

    class Retry:
        async def invoke(self, inv: Invocation, call_next):  # type: ignore[no-untyped-def]
            result = await call_next(inv)
            if not result.ok:
                inv.attempt += 1
                result = await call_next(inv)
            return result

    chain = build_chain([TracingFilter(t, "internal"), Retry(), AttemptSpanFilter(t)], upstream)
    await chain(Invocation("http", "orders", "GET"))
    first, second, hop = spans
    assert first.parent_id == second.parent_id == hop.span_id
    assert [s.span_id for s in (first, second)] == sent  # each try carries its own span
    assert (first.ok, first.attributes["server.address"]) == (False, "10.0.0.1")
    assert (second.ok, second.attributes["server.address"]) == (True, "10.0.0.2")
    assert hop.attributes["sofamesh.retries"] == 1
    assert first.trace_id == second.trace_id == hop.trace_id


def test_off_composes_nothing_and_on_composes_the_hop_filter() -> None:
    from sofamesh.config import load_config
    from sofamesh.runtime import Runtime

    off = Runtime(load_config({"app": "shop", "registry": "memory://"}, env={}))
    assert (off.tracer, off.spans, off.istio) == (None, None, None)
    assert off._traced("server") == [] and off._istio("source") == []
    cfg = {"app": "shop", "registry": "memory://", "tracing": {"enabled": True}}
    on = Runtime(load_config(cfg, env={}))
    [hop] = on._traced("server")
    assert isinstance(hop, TracingFilter)
