"""Bolt frames <-> the neutral model (`sofamesh.protocols.bolt.mapping`): routing fields from the
header map, mesh headers per hop, deadlines in the timeout field, and the status tables."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.codecs.bolt.bolt_vectors import H3_ECHO_REQUEST, H4_ECHO_REQUEST, V2_CRC_REQUEST

from sofamesh.clock import MonotonicClock
from sofamesh.codecs.bolt import (
    Codec,
    FrameDecoder,
    RequestFrame,
    ResponseFrame,
    ResponseStatus,
    encode,
    reply,
    request,
)
from sofamesh.codecs.bolt.sofarpc import (
    SofaRequest,
    decode_response,
    encode_request,
    error_of,
)
from sofamesh.deadlines import DeadlineWatch
from sofamesh.model import CALLER_HEADER, Invocation, Result, Status
from sofamesh.protocols.bolt.mapping import (
    BOLT_TO_STATUS,
    ERROR_HEADER,
    METHOD_KEY,
    SERVICE_KEY,
    STATUS_TO_BOLT,
    error_response,
    invocation_of,
    invocation_to_frame,
    reply_of,
    request_to_invocation,
    response_to_result,
    result_to_response,
)
from sofamesh.protocols.bolt.server import BoltConnInfo
from sofamesh.protocols.bolt.support import InboundBoltHandler

SERVICE = "com.example.EchoService:1.0"


def decoded(raw: bytes) -> RequestFrame:
    decoder = FrameDecoder()
    decoder.receive_data(raw)
    frame = decoder.next_frame()
    assert isinstance(frame, RequestFrame)
    return frame


def test_service_from_the_header_and_method_from_the_body_for_node_peers() -> None:
    inv = invocation_of(decoded(H4_ECHO_REQUEST))
    assert (inv.protocol, inv.service, inv.method, inv.caller) == ("bolt", SERVICE, "echo", "")
    assert inv.headers.get("service") == SERVICE
    assert inv.payload == decoded(H4_ECHO_REQUEST)  # untouched


def test_java_style_headers_need_no_body() -> None:
    headers = {
        "sofa_head_target_service": "a.B:2.0",
        "sofa_head_method_name": "go",
        "rpc_trace_context.sofaCallerApp": "shop",
    }
    inv = invocation_of(request(1, b"not hessian at all", headers=headers))
    assert (inv.service, inv.method, inv.caller) == ("a.B:2.0", "go", "shop")


def test_older_dialect_routes_on_the_header_and_keeps_its_body() -> None:
    frame = decoded(H3_ECHO_REQUEST)
    inv = invocation_of(frame)
    assert (inv.service, inv.method) == (SERVICE, "")  # unreadable body: no method, no error
    assert inv.payload is frame


def test_protobuf_bodies_are_never_read() -> None:
    body = encode_request(SofaRequest("m", [], "x.Y:1.0"), [])
    inv = invocation_of(request(1, body, codec=Codec.PROTOBUF))
    assert (inv.service, inv.method) == ("", "")


def test_mesh_headers_move_out_of_the_frame_and_each_hop_sets_its_own() -> None:
    frame = request(9, b"body", timeout_ms=3000).with_headers(
        [("service", "s:1"), (CALLER_HEADER, "spoofed"), ("k", None)], keep_nulls=True
    )  # sofa-bolt-node writes null values
    inv = invocation_of(frame)
    assert inv.caller == "spoofed" and inv.headers.get(CALLER_HEADER) == "spoofed"
    assert inv.payload.headers() == (("service", "s:1"), ("k", None))
    inv.caller = "shop"
    inv.headers.set("x-sofamesh-shadow", "true")
    inv.deadline = 100.25
    sent = invocation_to_frame(inv, now=100.0)
    assert sent.headers() == (
        ("service", "s:1"), ("k", None), ("x-sofamesh-shadow", "true"), (CALLER_HEADER, "shop"),
    )  # fmt: skip
    assert sent.timeout_ms == 250 and sent.body == b"body"


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["service", "Sofa_Head_Target_Service", "sofa_head_method_name", "trace",
                 "rpc_trace_context.sofaCallerApp", CALLER_HEADER, "x-sofamesh-hop"]
            ),
            st.none() | st.sampled_from(["", "s:1", "s:2", "echo", "app"]),
        ),
        max_size=6,
    )
)  # fmt: skip
def test_reading_only_the_routing_headers_gives_the_same_invocation(
    items: list[tuple[str, str | None]],
) -> None:
    frame = request(3, b"body", timeout_ms=50).with_headers(items, keep_nulls=True)
    lazy, whole = invocation_of(frame), request_to_invocation(frame, frame.headers())
    assert (lazy.service, lazy.method, lazy.caller) == (whole.service, whole.method, whole.caller)
    assert lazy.payload == whole.payload
    assert invocation_to_frame(lazy, now=0.0) == invocation_to_frame(whole, now=0.0)
    assert lazy.headers.items() == whole.headers.items()  # parsed on first use


def test_headers_a_filter_changes_reach_the_next_hop_from_the_lazy_map() -> None:
    inv = invocation_of(request(1, b"", headers={"Service": "s:1", "trace": "t"}))
    assert inv.headers.get("trace") == "t"
    inv.headers.set("x-sofamesh-shadow", "true")
    assert invocation_to_frame(inv, now=0.0).headers() == (
        ("Service", "s:1"), ("trace", "t"), ("x-sofamesh-shadow", "true"),
    )  # fmt: skip


def test_the_timeout_field_never_reaches_zero() -> None:
    inv = invocation_of(request(1, b"", headers={"service": "s:1"}))
    inv.deadline = 5.0
    assert invocation_to_frame(inv, now=5.0).timeout_ms == 1  # 0 would mean "no timeout"


def test_a_peer_response_comes_back_under_the_callers_id_and_version() -> None:
    caller = decoded(V2_CRC_REQUEST)
    upstream = reply(request(77, b""), body=b"\x05hello")
    resp = result_to_response(response_to_result(upstream), caller)
    assert (resp.request_id, resp.version, resp.ver1, resp.switch) == (5, 2, 2, 1)
    assert resp.has_crc and resp.body == b"\x05hello"
    assert decoded_response(encode(resp)) == resp  # the CRC is recomputed


@pytest.mark.parametrize("caller", [H4_ECHO_REQUEST, V2_CRC_REQUEST])
@pytest.mark.parametrize(
    "result",
    [
        Result(Status.OK, payload=reply(decoded(V2_CRC_REQUEST), body=b"\x05hello")),
        Result(Status.OK, payload=b"cached"),
        Result(Status.RATE_LIMITED, payload=b"slow down"),
    ],
    ids=["peer", "direct", "mesh-made"],
)
def test_reply_of_is_result_to_response_encoded_or_not(caller: bytes, result: Result) -> None:
    to = decoded(caller)
    out = reply_of(result, to)
    expected = result_to_response(result, to)
    peer_to_v1 = type(result.payload) is ResponseFrame and to.version == 1
    assert isinstance(out, bytes) is peer_to_v1  # the usual proxied reply comes encoded
    assert (out if isinstance(out, bytes) else encode(out)) == encode(expected)


def decoded_response(raw: bytes) -> ResponseFrame:
    decoder = FrameDecoder()
    decoder.receive_data(raw)
    frame = decoder.next_frame()
    assert isinstance(frame, ResponseFrame)
    return frame


@pytest.mark.parametrize("status", list(ResponseStatus))
def test_every_peer_status_has_a_neutral_meaning(status: ResponseStatus) -> None:
    result = response_to_result(reply(request(1, b""), status=status))
    assert result.code == status
    assert result.status is BOLT_TO_STATUS.get(status, Status.APP_ERROR)


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.OK])
def test_mesh_failures_reach_sofarpc_clients_and_the_next_hop(status: Status) -> None:
    caller = decoded(H4_ECHO_REQUEST)
    resp = error_response(caller, status, "why it failed")
    assert resp.status == STATUS_TO_BOLT[status] and resp.request_id == caller.request_id
    assert resp.codec == Codec.HESSIAN2
    assert error_of(resp.body)[0] == "sofamesh: why it failed"  # what the client shows
    assert resp.headers() == ((ERROR_HEADER, status.value),)
    back = response_to_result(resp).status
    never_reached = {Status.CONNECT_FAILED, Status.NO_ENDPOINT, Status.UNAVAILABLE}
    assert back is (Status.CONNECT_FAILED if status in never_reached else status)


def test_older_dialect_callers_get_errors_in_their_dialect() -> None:
    resp = error_response(decoded(H3_ECHO_REQUEST), Status.NO_ENDPOINT, "gone")
    assert resp.body.startswith(b"O\xc8\x34com.alipay.remoting.rpc.exception.RpcServerException")
    assert b"S\x00\x0esofamesh: gone" in resp.body


def test_governance_answers_become_sofa_responses() -> None:
    caller = decoded(H4_ECHO_REQUEST)
    ok = result_to_response(Result(Status.OK, payload=b"cached"), caller)
    assert ok.status == ResponseStatus.SUCCESS
    assert decode_response(ok.body).appResponse == "cached"
    limited = result_to_response(Result(Status.RATE_LIMITED, payload=b"slow down"), caller)
    assert limited.status == ResponseStatus.SERVER_THREADPOOL_BUSY
    assert error_of(limited.body)[0] == "sofamesh: slow down"
    coded = result_to_response(Result(Status.UNAVAILABLE, code=ResponseStatus.NO_PROCESSOR), caller)
    assert coded.status == ResponseStatus.NO_PROCESSOR


@given(st.sampled_from([s for s in Status if s is not Status.OK]), st.text(max_size=200))
def test_any_detail_survives_the_error_body(status: Status, detail: str) -> None:
    resp = error_response(request(3, b""), status, detail)
    assert error_of(decoded_response(encode(resp)).body)[0] == f"sofamesh: {detail}"


@pytest.mark.anyio
@pytest.mark.parametrize("on_watch", [True, False], ids=["watch", "move_on_after"])
async def test_the_inbound_side_cancels_work_at_the_callers_deadline(on_watch: bool) -> None:
    cancelled: list[str] = []

    async def chain(inv: Invocation) -> Result:
        if inv.method == "quick":
            return Result(Status.OK, payload="done")
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(inv.method)
        raise AssertionError("unreachable")

    watch = DeadlineWatch()
    handler = InboundBoltHandler(
        lambda _s: chain, MonotonicClock(), lambda: watch if on_watch else None
    )
    conn = BoltConnInfo(1, "127.0.0.1:1", "127.0.0.1:2")
    async with anyio.create_task_group() as tg:
        await tg.start(watch.run)
        with anyio.fail_after(5):
            late = await handler(
                request(1, b"", headers={SERVICE_KEY: "s:1", METHOD_KEY: "slow"}, timeout_ms=20),
                conn,
            )
            quick = await handler(
                request(2, b"", headers={SERVICE_KEY: "s:1", METHOD_KEY: "quick"}, timeout_ms=0),
                conn,
            )
        tg.cancel_scope.cancel()
    assert late is not None and late.status == ResponseStatus.TIMEOUT and cancelled == ["slow"]
    assert quick is not None and quick.status == ResponseStatus.SUCCESS
