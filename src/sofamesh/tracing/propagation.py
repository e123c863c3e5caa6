"""Trace context on the wire: small pure functions over the neutral `Headers`.

Formats (names as in `tracing.propagation` of the configuration):

- `w3c`: `traceparent: 00-<trace id>-<parent id>-<flags>` and `tracestate`
  (W3C Trace Context, the default, what OpenTelemetry speaks);
- `b3`: one `b3: <trace id>-<span id>-<sampled>[-<parent id>]` header;
- `b3multi`: `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`, `X-B3-Flags`
  (Zipkin's original headers, Envoy's default);
- `sofatracer`: `SOFA-TraceId`/`SOFA-RpcId` on HTTP, and on Bolt the flattened
  `rpc_trace_context.sofaTraceId`/`.sofaRpcId` of the request's header map
  (which the Bolt mapping lowercases into neutral headers). The rpc id is the
  span's place in the call tree, as SOFATracer numbers it: the root is `0`, the
  calls a span makes are its id plus `.1`, `.2`, ... in order (`child_rpc_id`),
  and a callee's server span keeps the id it received. An id that is not digits
  and dots (or longer than `MAX_RPC_ID`) is read as the root's.

A header may come twice (a Bolt header map a mesh hop appended to): the last one
wins, as when Java's SOFARPC decodes the map. On Bolt only, injected headers are
named in `TRACE_MARK`, because the Bolt mapping forwards the caller's header map
untouched and adds only what a hop says it set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from sofamesh.model import Headers
from sofamesh.tracing.span import SpanContext

TRACE_MARK = "x-sofamesh-trace-set"
# Protocols whose mapping forwards the caller's own header map (Bolt) or attachments (Dubbo)
# and adds only the mesh's entries: there the injected names are marked.
_FORWARDED_UNTOUCHED = frozenset({"bolt", "dubbo"})
# Bolt header-map keys are case-sensitive for Java peers: the names SOFARPC writes.
BOLT_CASE = {
    "rpc_trace_context.sofatraceid": "rpc_trace_context.sofaTraceId",
    "rpc_trace_context.sofarpcid": "rpc_trace_context.sofaRpcId",
}
_HEX = frozenset("0123456789abcdef")


def _last(headers: Headers, name: str) -> str | None:
    values = headers.get_all(name)
    return values[-1].strip() if values else None


def _hex(value: str, size: int) -> bool:
    return len(value) == size and _HEX.issuperset(value) and value != "0" * size


# -- W3C Trace Context ----------------------------------------------------------------


def extract_w3c(headers: Headers) -> SpanContext | None:
    raw = _last(headers, "traceparent")
    if raw is None:
        return None
    parts = raw.lower().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or not _HEX.issuperset(parts[0]):
        return None
    if parts[0] == "00" and len(parts) != 4:
        return None  # version 00 has exactly four fields; later versions may add some
    _, trace_id, span_id, flags = parts[:4]
    if not (_hex(trace_id, 32) and _hex(span_id, 16) and len(flags) == 2):
        return None
    if not _HEX.issuperset(flags):
        return None
    state = ",".join(headers.get_all("tracestate"))
    return SpanContext(trace_id, span_id, bool(int(flags, 16) & 1), state)


def inject_w3c(ctx: SpanContext, headers: Headers) -> list[str]:
    headers.set("traceparent", f"00-{ctx.trace_id}-{ctx.span_id}-{'01' if ctx.sampled else '00'}")
    if ctx.tracestate:
        headers.set("tracestate", ctx.tracestate)
        return ["traceparent", "tracestate"]
    return ["traceparent"]


# -- B3 -------------------------------------------------------------------------------


def _b3_trace(value: str) -> str | None:
    value = value.lower()
    if len(value) == 16:
        value = "0" * 16 + value  # 64-bit ids, left-padded as OpenTelemetry does
    return value if _hex(value, 32) else None


def _b3_sampled(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.lower() in ("1", "d", "true")


def extract_b3(headers: Headers) -> SpanContext | None:
    raw = _last(headers, "b3")
    if raw is None:
        return None
    parts = raw.split("-")
    if len(parts) < 2:
        return None  # `b3: 0` alone decides sampling only, there is no context to continue
    trace_id, span_id = _b3_trace(parts[0]), parts[1].lower()
    if trace_id is None or not _hex(span_id, 16):
        return None
    return SpanContext(trace_id, span_id, _b3_sampled(parts[2] if len(parts) > 2 else None))


def inject_b3(ctx: SpanContext, headers: Headers) -> list[str]:
    headers.set("b3", f"{ctx.trace_id}-{ctx.span_id}-{'1' if ctx.sampled else '0'}")
    return ["b3"]


def extract_b3multi(headers: Headers) -> SpanContext | None:
    trace, span = _last(headers, "x-b3-traceid"), _last(headers, "x-b3-spanid")
    if trace is None or span is None:
        return None
    trace_id, span_id = _b3_trace(trace), span.lower()
    if trace_id is None or not _hex(span_id, 16):
        return None
    sampled = _b3_sampled(_last(headers, "x-b3-sampled"))
    if _last(headers, "x-b3-flags") == "1":
        sampled = True  # debug
    return SpanContext(trace_id, span_id, sampled)


def inject_b3multi(ctx: SpanContext, headers: Headers) -> list[str]:
    headers.set("x-b3-traceid", ctx.trace_id)
    headers.set("x-b3-spanid", ctx.span_id)
    headers.set("x-b3-sampled", "1" if ctx.sampled else "0")
    return ["x-b3-traceid", "x-b3-spanid", "x-b3-sampled"]


# -- SOFATracer -----------------------------------------------------------------------


def _sofa_names(protocol: str) -> tuple[str, str]:
    if protocol == "bolt":
        return "rpc_trace_context.sofatraceid", "rpc_trace_context.sofarpcid"
    return "sofa-traceid", "sofa-rpcid"


def sofa_to_trace_id(sofa: str) -> str:
    """A W3C trace id for a SOFATracer one (30 hex digits: IP, ms, sequence, pid)."""
    low = sofa.lower()
    if 0 < len(low) <= 32 and _HEX.issuperset(low) and low.strip("0"):
        return low.rjust(32, "0")
    import hashlib  # on first use: it loads OpenSSL's digests (0.7 MB an idle sidecar lacks)

    return hashlib.blake2b(sofa.encode(), digest_size=16).hexdigest()


ROOT_RPC_ID = "0"
MAX_RPC_ID = 64  # characters: 32 levels of nesting, far past any real call tree
_RPC_ID = re.compile(r"\d{1,9}(?:\.\d{1,9})*")


def valid_rpc_id(rpc: str | None) -> str:
    """`rpc` if SOFATracer could have written it, else the root's id."""
    if rpc and len(rpc) <= MAX_RPC_ID and _RPC_ID.fullmatch(rpc):
        return rpc
    return ROOT_RPC_ID


def child_rpc_id(parent: SpanContext) -> str:
    """The rpc id of the next call `parent`'s span makes: `0` -> `0.1`, `0.2`, ...
    (SOFATracer's `SofaTracerSpanContext.nextChildContextId`); past `MAX_RPC_ID`, the
    parent's own, so a runaway depth cannot grow the header."""
    own = parent.sofa_rpc_id or ROOT_RPC_ID
    parent.sofa_children += 1
    child = f"{own}.{parent.sofa_children}"
    return child if len(child) <= MAX_RPC_ID else own


def extract_sofatracer(headers: Headers, protocol: str) -> SpanContext | None:
    trace_name, rpc_name = _sofa_names(protocol)
    sofa = _last(headers, trace_name)
    if not sofa or len(sofa) > 128:
        return None
    rpc = valid_rpc_id(_last(headers, rpc_name))
    # SOFATracer sends no span id: one derived from the rpc id names the caller's span.
    import hashlib  # on first use: it loads OpenSSL's digests (0.7 MB an idle sidecar lacks)

    span_id = hashlib.blake2b(f"{sofa}/{rpc}".encode(), digest_size=8).hexdigest()
    return SpanContext(sofa_to_trace_id(sofa), span_id, None, "", sofa, rpc)


def inject_sofatracer(ctx: SpanContext, headers: Headers, protocol: str) -> list[str]:
    trace_name, rpc_name = _sofa_names(protocol)
    headers.set(trace_name, ctx.sofa_trace_id or ctx.trace_id)
    headers.set(rpc_name, ctx.sofa_rpc_id or ROOT_RPC_ID)
    return [trace_name, rpc_name]


# -- configured sets ------------------------------------------------------------------

Extract = Callable[[Headers, str], SpanContext | None]
Inject = Callable[[SpanContext, Headers, str], list[str]]

EXTRACTORS: dict[str, Extract] = {
    "w3c": lambda h, _p: extract_w3c(h),
    "b3": lambda h, _p: extract_b3(h),
    "b3multi": lambda h, _p: extract_b3multi(h),
    "sofatracer": extract_sofatracer,
}
INJECTORS: dict[str, Inject] = {
    "w3c": lambda c, h, _p: inject_w3c(c, h),
    "b3": lambda c, h, _p: inject_b3(c, h),
    "b3multi": lambda c, h, _p: inject_b3multi(c, h),
    "sofatracer": inject_sofatracer,
}


class Propagator:
    """The configured formats: extract from the first that is present, inject all."""

    def __init__(self, formats: Sequence[str]) -> None:
        self._extract = [EXTRACTORS[f] for f in formats]
        self._inject = [INJECTORS[f] for f in formats]
        self._sofa = "sofatracer" in formats

    def extract(self, headers: Headers, protocol: str) -> SpanContext | None:
        for extract in self._extract:
            ctx = extract(headers, protocol)
            if ctx is not None:
                if self._sofa and not ctx.sofa_trace_id:
                    _add_sofa_ids(ctx, headers, protocol)
                return ctx
        return None

    def inject(self, ctx: SpanContext, headers: Headers, protocol: str) -> None:
        names: list[str] = []
        for inject in self._inject:
            names += inject(ctx, headers, protocol)
        if protocol in _FORWARDED_UNTOUCHED:
            headers.set(TRACE_MARK, ",".join(names))


def _add_sofa_ids(ctx: SpanContext, headers: Headers, protocol: str) -> None:
    """SOFATracer's ids beside another format's context, so its rpc id is not lost."""
    sofa = extract_sofatracer(headers, protocol)
    if sofa is not None:
        ctx.sofa_trace_id, ctx.sofa_rpc_id = sofa.sofa_trace_id, sofa.sofa_rpc_id


def expand_mark(extra: list[tuple[str, str]], headers: Headers) -> list[tuple[str, str]]:
    """A hop's mesh entries (`x-sofamesh-*`) with `TRACE_MARK` replaced by the entries it
    names: appended after the caller's own, they win as the last value of a key does."""
    for i, (k, v) in enumerate(extra):
        if k == TRACE_MARK:
            return extra[:i] + extra[i + 1 :] + bolt_entries(v, headers)
    return extra


def bolt_entries(names: str, headers: Headers) -> list[tuple[str, str]]:
    """The header-map entries a Bolt hop adds for `TRACE_MARK`'s names (their last values)."""
    out = []
    for name in names.split(","):
        value = _last(headers, name)
        if value is not None:
            out.append((BOLT_CASE.get(name, name), value))
    return out
