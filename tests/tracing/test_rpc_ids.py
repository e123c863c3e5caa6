"""SOFATracer's rpc ids: a server span keeps the id it received and numbers its calls."""

from __future__ import annotations

import pytest

from sofamesh.chain import build_chain
from sofamesh.clock import FakeClock
from sofamesh.config.telemetry import TracingConfig
from sofamesh.filters.tracing import AttemptSpanFilter, TracingFilter
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.tracing import Span, Tracer
from sofamesh.tracing.propagation import child_rpc_id, extract_sofatracer, valid_rpc_id
from sofamesh.tracing.span import SpanContext

pytestmark = pytest.mark.anyio

SOFA = "0a0fe8ec1489998877001234512345"
HTTP_NAMES = ("SOFA-TraceId", "SOFA-RpcId")
BOLT_NAMES = ("rpc_trace_context.sofaTraceId", "rpc_trace_context.sofaRpcId")


def test_children_are_numbered_in_order_under_the_parents_id() -> None:
    root, deep = SpanContext("t" * 32, "s" * 16, None), SpanContext("t", "s", None, "", "x", "0.2")
    assert [child_rpc_id(root) for _ in range(3)] == ["0.1", "0.2", "0.3"]
    assert [child_rpc_id(deep) for _ in range(2)] == ["0.2.1", "0.2.2"]


def test_rpc_ids_sofatracer_could_not_have_written_are_the_roots() -> None:
    assert [valid_rpc_id(v) for v in ("0.1.12", "", None, "0..1", "1.a", "0." + "1." * 40)] == [
        "0.1.12", "0", "0", "0", "0", "0",
    ]  # fmt: skip
    deep = SpanContext("t", "s", None, "", "x", "0" + ".1" * 31)
    assert child_rpc_id(deep) == deep.sofa_rpc_id  # no deeper than the header allows


def _headers(names: tuple[str, str], rpc: str | None) -> Headers:
    trace, rpc_name = names
    return Headers([(trace, SOFA)] + ([(rpc_name, rpc)] if rpc is not None else []))


@pytest.mark.parametrize(("protocol", "names"), [("http", HTTP_NAMES), ("bolt", BOLT_NAMES)])
@pytest.mark.parametrize(
    ("received", "calls"), [("0.2", ["0.2.1", "0.2.2"]), (None, ["0.1", "0.2"])]
)
async def test_calls_under_a_server_span_are_its_children(
    protocol: str, names: tuple[str, str], received: str | None, calls: list[str]
) -> None:
    spans: list[Span] = []
    t = Tracer(
        TracingConfig(enabled=True, sample_ratio=1.0, propagation=("sofatracer",)),
        FakeClock(),
        spans.append,
        "orders",
    )
    outbound = build_chain([TracingFilter(t, "internal"), AttemptSpanFilter(t)], _sent)
    sent: list[str] = []

    async def app(inv: Invocation) -> Result:
        # The app passes the context it was given on to each of its calls.
        got = extract_sofatracer(inv.headers, protocol)
        assert got is not None and got.sofa_rpc_id == (received or "0")
        for _ in calls:
            call = Invocation(protocol, "stock", "m", inv.headers.copy())
            sent.append((await outbound(call)).detail)
        return Result(Status.OK)

    inbound = build_chain([TracingFilter(t, "server")], app)
    await inbound(Invocation(protocol, "orders", "m", _headers(names, received)))
    assert sent == calls
    server = [s for s in spans if s.kind == "server"]
    assert [s.context.sofa_rpc_id or "0" for s in server] == [received or "0"]
    # Each call's try carries the call's own id: a retry is the same call to its caller.
    assert [s.context.sofa_rpc_id for s in spans if s.kind == "client"] == calls
    assert not t._serving  # finished server spans are forgotten


async def _sent(inv: Invocation) -> Result:
    got = extract_sofatracer(inv.headers, inv.protocol)
    assert got is not None and got.sofa_trace_id == SOFA
    return Result(Status.OK, detail=got.sofa_rpc_id)


async def test_an_id_the_caller_numbered_itself_is_kept() -> None:
    # A SOFATracer app's client span `0.3` through a sidecar: no server span of this tracer
    # is `0.3`, so the call goes on as `0.3`, and its provider logs the same id.
    t = Tracer(
        TracingConfig(enabled=True, propagation=("w3c", "sofatracer")),
        FakeClock(),
        [].append,
        "shop",
    )
    outbound = build_chain([TracingFilter(t, "internal"), AttemptSpanFilter(t)], _sent)
    result = await outbound(Invocation("http", "orders", "GET", _headers(HTTP_NAMES, "0.3")))
    assert result.detail == "0.3"


async def test_the_rpc_id_is_read_beside_a_w3c_context() -> None:
    t = Tracer(
        TracingConfig(enabled=True, propagation=("w3c", "sofatracer")),
        FakeClock(),
        [].append,
        "shop",
    )
    outbound = build_chain([TracingFilter(t, "internal")], _sent)
    headers = _headers(HTTP_NAMES, "0.4")
    headers.set("traceparent", f"00-{'ab' * 16}-{'cd' * 8}-01")
    assert (await outbound(Invocation("http", "orders", "GET", headers))).detail == "0.4"
