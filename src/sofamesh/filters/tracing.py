"""Each mesh hop's span: continue the caller's trace (or start one), pass the context on.

Composed only when `tracing.enabled` (a mesh without tracing runs no code for it).
`TracingFilter` is the hop's span: inbound, a server span under the caller's; outbound,
the span of the whole call under the app's context. `AttemptSpanFilter` sits below
retries in a chain that balances: one client span per attempt, naming the endpoint,
so a retried call shows each try, and the next hop continues under the try it got.
"""

from __future__ import annotations

from contextvars import ContextVar

from sofamesh.chain import Handler
from sofamesh.model import Invocation, Result, Status
from sofamesh.tracing.span import Kind, Span
from sofamesh.tracing.tracer import Tracer

# The hop's span while its call runs, for the tries below it: reading it back from the
# headers would parse them again on every try.
_HOP: ContextVar[Span | None] = ContextVar("sofamesh_hop_span", default=None)


class TracingFilter:
    def __init__(self, tracer: Tracer, kind: Kind) -> None:
        self._tracer = tracer
        self._kind = kind
        self._propagator = tracer.propagator

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        parent = self._propagator.extract(inv.headers, inv.protocol)
        span = self._tracer.start(f"{inv.service}/{inv.method}", self._kind, parent)
        self._propagator.inject(span.context, inv.headers, inv.protocol)
        token = _HOP.set(span)
        try:
            result = await call_next(inv)
        except BaseException:
            self._tracer.finish(span, inv, Result.failure(Status.INTERNAL, "cancelled or failed"))
            raise
        finally:
            _HOP.reset(token)
        self._tracer.finish(span, inv, result)
        return result


class AttemptSpanFilter:
    """One client span per try, under the hop's span; each try carries its own context."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._propagator = tracer.propagator

    async def invoke(self, inv: Invocation, call_next: Handler) -> Result:
        name = f"{inv.service}/{inv.method} try {inv.attempt + 1}"
        hop = _HOP.get()
        if hop is not None:
            span = self._tracer.child(hop, name, "client")
        else:  # composed without a hop span above it: continue what the headers carry
            parent = self._propagator.extract(inv.headers, inv.protocol)
            span = self._tracer.start(name, "client", parent)
        self._propagator.inject(span.context, inv.headers, inv.protocol)
        try:
            result = await call_next(inv)
        except BaseException:
            self._tracer.finish(span, inv, Result.failure(Status.INTERNAL, "cancelled or failed"))
            raise
        self._tracer.finish(span, inv, result)
        return result
