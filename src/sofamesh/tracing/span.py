"""The span model: one hop's record of one call, and the context a hop passes on.

Ids follow W3C Trace Context (a 16-byte trace id, an 8-byte span id, lowercase
hex), which OpenTelemetry, B3 (128-bit) and Zipkin share. Times are read from the
mesh's injected `Clock` (monotonic) and moved to the wall clock only for export.
"""

from __future__ import annotations

import random
from typing import Literal

import attrs

Kind = Literal["server", "client", "internal"]

# The module's generator: seeded from the OS at start and again in every forked child (so
# forked workers never repeat ids), and a C call, where SystemRandom is a system call per id.
_bits = random.getrandbits


def new_trace_id() -> str:
    return f"{_bits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{_bits(64) or 1:016x}"


@attrs.define(slots=True)
class SpanContext:
    """What travels between hops: the trace, the sending span, the sampling decision.

    `sofa_trace_id` and `sofa_rpc_id` keep SOFATracer's own ids when the caller
    sent them, so a SOFATracer peer downstream sees its trace id unchanged;
    `sofa_children` counts the calls numbered under this span's rpc id.
    """

    trace_id: str
    span_id: str
    sampled: bool | None  # None: the caller did not say (SOFATracer, B3 without a flag)
    tracestate: str = ""
    sofa_trace_id: str = ""
    sofa_rpc_id: str = ""
    sofa_children: int = 0


@attrs.define(slots=True, eq=False)
class Span:
    """One hop's span. `attributes` use OpenTelemetry's RPC semantic-convention names."""

    name: str
    kind: Kind
    context: SpanContext
    parent_id: str
    start: float
    end: float = 0.0
    ok: bool = True
    status_message: str = ""
    attributes: dict[str, str | int] = attrs.field(factory=dict)

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    @property
    def span_id(self) -> str:
        return self.context.span_id
