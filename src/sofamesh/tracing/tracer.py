"""Starting and finishing spans: the sampling decision, and where finished spans go.

Sampling (OpenTelemetry's names): a caller's decision is followed when it sent one
(`parent_based`); otherwise the trace id decides at `sample_ratio`, so every hop of
one trace that decides by ratio decides alike. A span not sampled is still kept
when its call failed (`always_on_errors`), without changing the flag it passes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sofamesh.clock import Clock
from sofamesh.config.telemetry import TracingConfig
from sofamesh.model import Invocation, Result
from sofamesh.tracing.propagation import Propagator
from sofamesh.tracing.span import Kind, Span, SpanContext, new_span_id, new_trace_id

_RATIO_BITS = 56  # the trace id's low 56 bits, as OpenTelemetry's TraceIdRatioBased reads


class Sampler:
    def __init__(self, ratio: float, parent_based: bool) -> None:
        self._bound = int(ratio * (1 << _RATIO_BITS))
        self._parent_based = parent_based

    def sampled(self, trace_id: str, parent: SpanContext | None) -> bool:
        if self._parent_based and parent is not None and parent.sampled is not None:
            return parent.sampled
        return int(trace_id[-14:], 16) < self._bound


class Tracer:
    """One per runtime: makes spans, and hands the ones worth keeping to `sink`."""

    def __init__(
        self, config: TracingConfig, clock: Clock, sink: Callable[[Span], None], app: str
    ) -> None:
        self.config = config
        self.clock = clock
        self.app = app
        self.propagator = Propagator(config.propagation)
        self.sampler = Sampler(config.sample_ratio, config.parent_based)
        self._sink = sink
        self._keep_errors = config.always_on_errors
        # Monotonic span times become wall-clock ones at export by this offset.
        self.wall_offset = time.time() - clock.now()

    def start(self, name: str, kind: Kind, parent: SpanContext | None) -> Span:
        """A span continuing `parent` (a remote caller's context), or a new trace."""
        now = self.clock.now()
        if parent is None:
            trace_id = new_trace_id()
            ctx = SpanContext(trace_id, new_span_id(), self.sampler.sampled(trace_id, None))
            return Span(name, kind, ctx, "", now)
        sampled = self.sampler.sampled(parent.trace_id, parent)
        ctx = SpanContext(
            parent.trace_id, new_span_id(), sampled, parent.tracestate,
            parent.sofa_trace_id, parent.sofa_rpc_id,
        )  # fmt: skip
        return Span(name, kind, ctx, parent.span_id, now)

    def child(self, parent: Span, name: str, kind: Kind) -> Span:
        """A span under `parent` in this process: a try under the hop's span."""
        p = parent.context
        ctx = SpanContext(
            p.trace_id, new_span_id(), p.sampled, p.tracestate, p.sofa_trace_id, p.sofa_rpc_id
        )
        return Span(name, kind, ctx, p.span_id, self.clock.now())

    def finish(self, span: Span, inv: Invocation, result: Result) -> None:
        """End `span` with `result`; keep it if sampled, or failed and errors are kept."""
        span.end = self.clock.now()
        span.ok = result.ok
        if not result.ok:
            span.status_message = result.detail or result.status.value
        if span.context.sampled or (self._keep_errors and not result.ok):
            describe(span, inv, result)  # only for spans kept: most are not, at low ratios
            self._sink(span)


def describe(span: Span, inv: Invocation, result: Result) -> None:
    """The call's facts, under OpenTelemetry's RPC names where there is one."""
    attrs = span.attributes
    attrs["rpc.service"] = inv.service
    attrs["rpc.method"] = inv.method
    attrs["rpc.system"] = inv.protocol
    attrs["sofamesh.status"] = result.status.value
    if result.code:
        attrs["sofamesh.code"] = result.code
    if inv.caller:
        attrs["sofamesh.caller"] = inv.caller
    if inv.peer:
        attrs["sofamesh.peer_identity"] = inv.peer
    ep = result.endpoint or inv.endpoint
    if ep is not None:
        attrs["server.address"] = ep.host
        attrs["server.port"] = ep.port
    if inv.attempt:
        attrs["sofamesh.retries"] = inv.attempt
    decided = _decided_by(inv, result)
    if decided:
        attrs["sofamesh.rule"] = decided


def _decided_by(inv: Invocation, result: Result) -> str:
    """Which rule decided the call: a rule's rejection, else the route governance chose."""
    if result.status.value in ("rate_limited", "circuit_open", "unauthorized", "overloaded"):
        return f"{result.status.value}: {result.detail}" if result.detail else result.status.value
    return inv.route.name if inv.route is not None else ""
