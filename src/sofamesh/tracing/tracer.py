"""Starting and finishing spans: the sampling decision, and where finished spans go.

Sampling (OpenTelemetry's names): a caller's decision is followed when it sent one
(`parent_based`); otherwise the trace id decides at `sample_ratio`, so every hop of
one trace that decides by ratio decides alike. A span not sampled is still kept
when its call failed (`always_on_errors`), without changing the flag it passes on.

SOFATracer's rpc ids (with `sofatracer` among the formats): a server span keeps the
id it received and numbers the calls made under it. The app behind a sidecar passes
the server span's context back on its own calls (as Istio asks apps to), so a call
whose parent is a server span this tracer has open is that span's next child
(`0.1`, `0.2`, ...); a call whose id the caller numbered itself (a SOFATracer app's
client span) keeps it, as do retries, which are the same call to the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sofamesh.clock import Clock
from sofamesh.config.telemetry import TracingConfig
from sofamesh.model import Invocation, Result
from sofamesh.tracing.propagation import ROOT_RPC_ID, Propagator, child_rpc_id
from sofamesh.tracing.span import Kind, Span, SpanContext, new_span_id, new_trace_id

_RATIO_BITS = 56  # the trace id's low 56 bits, as OpenTelemetry's TraceIdRatioBased reads
# Server spans open at once whose calls are numbered: beyond it (spans never finished,
# or an extreme load), calls under new ones keep their parent's id.
MAX_OPEN_SERVER_SPANS = 65536


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
        self._numbering = "sofatracer" in config.propagation
        # Open server spans by (trace id, rpc id): the parents of the calls made under them.
        self._serving: dict[tuple[str, str], SpanContext] = {}

    def start(self, name: str, kind: Kind, parent: SpanContext | None) -> Span:
        """A span continuing `parent` (a remote caller's context), or a new trace."""
        now = self.clock.now()
        if parent is None:
            trace_id = new_trace_id()
            ctx = SpanContext(trace_id, new_span_id(), self.sampler.sampled(trace_id, None))
            span = Span(name, kind, ctx, "", now)
        else:
            sampled = self.sampler.sampled(parent.trace_id, parent)
            rpc = parent.sofa_rpc_id
            if self._numbering and kind != "server":
                rpc = self._rpc_id_of_call(parent)
            ctx = SpanContext(
                parent.trace_id, new_span_id(), sampled, parent.tracestate,
                parent.sofa_trace_id, rpc,
            )  # fmt: skip
            span = Span(name, kind, ctx, parent.span_id, now)
        if self._numbering and kind == "server" and len(self._serving) < MAX_OPEN_SERVER_SPANS:
            self._serving[_rpc_key(ctx)] = ctx
        return span

    def _rpc_id_of_call(self, parent: SpanContext) -> str:
        """A call's rpc id: the next child of the open server span it continues, else the
        id its caller gave it."""
        serving = self._serving.get(_rpc_key(parent))
        return parent.sofa_rpc_id if serving is None else child_rpc_id(serving)

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
        if self._numbering and span.kind == "server":
            key = _rpc_key(span.context)
            if self._serving.get(key) is span.context:
                del self._serving[key]
        span.ok = result.ok
        if not result.ok:
            span.status_message = result.detail or result.status.value
        if span.context.sampled or (self._keep_errors and not result.ok):
            describe(span, inv, result)  # only for spans kept: most are not, at low ratios
            self._sink(span)


def _rpc_key(ctx: SpanContext) -> tuple[str, str]:
    return ctx.trace_id, ctx.sofa_rpc_id or ROOT_RPC_ID


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
