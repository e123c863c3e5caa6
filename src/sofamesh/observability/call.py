"""The facts of one finished call that access logs and Istio's metrics report.

Read from the neutral `Invocation` and `Result` plus the protocol's payload where
it has an HTTP shape (method, target, body): the one place that knows how each
protocol's codes read to someone who expects Envoy's and Istio's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.http.mapping import STATUS_TO_HTTP

if TYPE_CHECKING:
    from sofamesh.tracing.propagation import Propagator

# Envoy's response flags for the mesh's own outcomes (Envoy's access-log docs).
FLAGS = {
    Status.NO_ENDPOINT: "UH",  # no healthy upstream
    Status.CONNECT_FAILED: "UF",  # upstream connection failure
    Status.UPSTREAM_RESET: "UC",  # upstream connection termination
    Status.TIMEOUT: "UT",  # upstream request timeout
    Status.RATE_LIMITED: "RL",  # rate limited locally
    Status.CIRCUIT_OPEN: "UO",  # upstream overflow (circuit breaking)
    Status.OVERLOADED: "UO",
    Status.UNAVAILABLE: "LH",  # local service failed its health check (draining)
    Status.BAD_REQUEST: "DPE",  # downstream protocol error
}
PROTOCOL_NAMES = {"http": "HTTP/1.1", "h2": "HTTP/2", "grpc": "HTTP/2"}
_GRPC_LIKE = frozenset({"grpc"})
# Every format's reader, made with the first call that carries a trace id: the tracing
# modules stay unloaded in a sidecar with tracing off until one does.
_any_format: Propagator | None = None


def response_code(inv: Invocation, result: Result) -> int:
    """Istio's `response_code`: the HTTP status (200 for a gRPC answer), else the protocol's."""
    protocol = inv.protocol
    if protocol in _GRPC_LIKE:
        return (
            200
            if result.payload is not None or result.ok
            else STATUS_TO_HTTP.get(result.status, 500)
        )
    if result.code:
        return result.code
    if result.ok:
        return 200 if protocol in PROTOCOL_NAMES else 0
    if protocol == "bolt":
        # Here, not at the top: the Bolt mapping pulls in Hessian 2, which a mesh without
        # Bolt traffic need not hold in memory.
        from sofamesh.protocols.bolt.mapping import STATUS_TO_BOLT

        return int(STATUS_TO_BOLT.get(result.status, 0))
    return STATUS_TO_HTTP.get(result.status, 500)


def grpc_status(inv: Invocation, result: Result) -> str:
    """Istio's `grpc_response_status`: the gRPC status number, empty off gRPC."""
    if inv.protocol not in _GRPC_LIKE:
        return ""
    if result.code or result.payload is not None:
        return str(result.code)
    # Here, as Bolt's above: a gRPC call's mesh-made answer, the codec loaded with gRPC.
    from sofamesh.codecs.grpc import STATUS_TO_GRPC

    return str(int(STATUS_TO_GRPC.get(result.status, 2)))


def response_flags(result: Result) -> str:
    return FLAGS.get(result.status, "-")


def body_size(message: object) -> int:
    """The bytes of a buffered message's body (HTTP request or response, Bolt frame), else 0."""
    body = getattr(message, "body", None)
    return len(body) if isinstance(body, bytes | bytearray) else 0


_TRACE_NAMES = frozenset(
    {"traceparent", "b3", "x-b3-traceid", "sofa-traceid", "rpc_trace_context.sofatraceid"}
)


def trace_id(inv: Invocation) -> str:
    """The call's trace id in any format it carries (the span's, when tracing is on)."""
    # One pass to see whether any format is there at all: most untraced calls carry none.
    if not inv.headers.carries_any(_TRACE_NAMES):
        return ""
    ctx = (_any_format or _read_any_format()).extract(inv.headers, inv.protocol)
    return ctx.trace_id if ctx is not None else ""


def _read_any_format() -> Propagator:
    global _any_format
    from sofamesh.tracing.propagation import Propagator

    _any_format = Propagator(["w3c", "b3", "b3multi", "sofatracer"])
    return _any_format


def request_method(inv: Invocation) -> str:
    method = getattr(inv.payload, "method", None)
    if isinstance(method, str):
        return method
    return "POST" if inv.protocol in _GRPC_LIKE else inv.method


def request_path(inv: Invocation) -> str:
    payload = inv.payload
    for name in ("target", "path"):
        value = getattr(payload, name, None)
        if isinstance(value, str):
            return value
    return f"/{inv.service}/{inv.method}"


def authority(inv: Invocation) -> str:
    value = getattr(inv.payload, "authority", None)
    if isinstance(value, str) and value:
        return value
    return inv.headers.get("host") or inv.headers.get(":authority") or inv.service
