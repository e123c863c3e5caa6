"""SOFARPC messages over Hessian 2 (`sofamesh.codecs.bolt.sofarpc`): captured bodies from
sofa-rpc-node, round trips, Java types of arguments, error bodies, hostile input."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.codecs.bolt.bolt_vectors import (
    H3_ECHO_REQUEST,
    H4_ADD_REQUEST,
    H4_ADD_RESPONSE,
    H4_ECHO_REQUEST,
    H4_ECHO_RESPONSE,
    H4_FAIL_RESPONSE,
)

from sofamesh.codecs.bolt import FrameDecoder, RequestFrame, ResponseFrame
from sofamesh.codecs.bolt.java_types import coerce, signature_of
from sofamesh.codecs.bolt.sofarpc import (
    RPC_SERVER_EXCEPTION,
    HeadUnreadable,
    SofaCodecError,
    SofaRequest,
    SofaResponse,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    error_of,
    peek_request,
    server_exception,
    sofa_classes,
)
from sofamesh.codecs.hessian2 import (
    Byte,
    Char,
    ClassRegistry,
    Float,
    Int,
    JavaException,
    JavaObject,
    Long,
    Short,
    TypedList,
    TypedMap,
)

SERVICE = "com.example.EchoService:1.0"


def frame_of(raw: bytes) -> RequestFrame | ResponseFrame:
    decoder = FrameDecoder()
    decoder.receive_data(raw)
    frame = decoder.next_frame()
    assert frame is not None
    return frame


def test_node_requests_decode_to_request_and_arguments() -> None:
    req, args = decode_request(frame_of(H4_ADD_REQUEST).body)
    assert req == SofaRequest("add", ["int", "int"], SERVICE, None, {"service": SERVICE})
    assert args == [2, 40]
    req, args = decode_request(frame_of(H4_ECHO_REQUEST).body)
    assert (req.methodName, req.methodArgSigs, args) == ("echo", ["java.lang.String"], ["hello"])


def test_node_responses_and_server_exception() -> None:
    assert decode_response(frame_of(H4_ECHO_RESPONSE).body) == SofaResponse(False, None, "hello")
    assert decode_response(frame_of(H4_ADD_RESPONSE).body).appResponse == 42
    message, exc = error_of(frame_of(H4_FAIL_RESPONSE).body)
    assert message == "Error: bad"
    assert isinstance(exc, JavaException) and exc.class_name == RPC_SERVER_EXCEPTION


def test_request_encodes_as_java_reads_it() -> None:
    req = SofaRequest("add", ["int", "int"], SERVICE, None, {"service": SERVICE})
    body = encode_request(req, [2, 40])
    # Java writes String[] as "[string"; the rest is byte for byte what sofa-rpc-node sent.
    node = frame_of(H4_ADD_REQUEST).body
    assert body == node.replace(b"\x72\x11[java.lang.String", b"\x72\x07[string")
    assert decode_request(body) == (req, [2, 40])


def test_arguments_must_match_signatures() -> None:
    with pytest.raises(SofaCodecError, match="2 arguments for 1 signatures"):
        encode_request(SofaRequest("f", ["int"]), [1, 2])


def test_peek_reads_only_the_request_and_refuses_quietly() -> None:
    req = peek_request(frame_of(H4_ECHO_REQUEST).body)
    assert req is not None and (req.methodName, req.targetServiceUniqueName) == ("echo", SERVICE)
    assert peek_request(frame_of(H3_ECHO_REQUEST).body) is None  # the older dialect
    assert peek_request(b"") is None
    assert peek_request(encode_response("x")) is None  # a SofaResponse is no request


@pytest.mark.parametrize(
    "body",
    [b"", b"\x05hello", encode_request(SofaRequest("f", ["int"]), [1]) + b"\x90"],
    ids=["empty", "a string", "trailing bytes"],
)
def test_decode_request_refuses_what_is_not_a_request(body: bytes) -> None:
    with pytest.raises(SofaCodecError):
        decode_request(body)


def test_error_bodies_of_every_shape() -> None:
    assert error_of(server_exception("sofamesh: no endpoint"))[0] == "sofamesh: no endpoint"
    assert error_of(b"")[0] == "the server sent no detail (empty body)"
    assert error_of(b"\x04oops") == ("oops", "oops")
    assert error_of(encode_response(None, error="no such method"))[0] == "no such method"
    assert error_of(b"C\x05")[0].startswith("unreadable error body")
    assert error_of(encode_response(7))[0] == "error body of type SofaResponse"


def test_user_classes_join_the_sofa_classes() -> None:
    class Point:
        pass

    user = ClassRegistry()
    user.register("com.example.Point", Point, fields=["x", "y"])
    registry = sofa_classes(user)
    assert "com.example.Point" in registry and SofaRequest in registry
    point = Point()
    point.x, point.y = 1, 2  # type: ignore[attr-defined]
    back = decode_response(encode_response(point, registry), registry).appResponse
    assert isinstance(back, Point) and (back.x, back.y) == (1, 2)  # type: ignore[attr-defined]


# -- Java types ----------------------------------------------------------------------------

COERCED: list[tuple[Any, str, Any]] = [
    (2, "int", Int(2)),
    (2, "java.lang.Long", Long(2)),
    (2, "long", Long(2)),
    (3, "short", Short(3)),
    (-4, "byte", Byte(-4)),
    (1.5, "float", Float(1.5)),
    (2, "double", 2.0),
    (True, "boolean", True),
    ("x", "char", Char("x")),
    ("s", "java.lang.String", "s"),
    (None, "java.lang.Integer", None),
    (None, "java.lang.String", None),
    ([1, 2], "[I", TypedList("[int", [1, 2])),
    ([1], "[J", TypedList("[long", [Long(1)])),
    (["a"], "[Ljava.lang.String;", TypedList("[string", ["a"])),
    ([[1]], "[[I", TypedList("[[int", [TypedList("[int", [1])])),
    ([{"x": 1}], "[Lcom.example.P;",
     TypedList("[com.example.P", [JavaObject("com.example.P", {"x": 1})])),
    (b"\x00", "[B", b"\x00"),
    ([1, 255], "[B", b"\x01\xff"),
    ([1], "java.util.List", [1]),
    ([1], "java.util.LinkedList", TypedList("java.util.LinkedList", [1])),
    ({1}, "java.util.Set", TypedList("java.util.HashSet", [1])),
    ({"a": 1}, "java.util.Map", {"a": 1}),
    ({"a": 1}, "java.util.TreeMap", TypedMap("java.util.TreeMap", {"a": 1})),
    ({"name": "a", "age": 3}, "com.example.Person",
     JavaObject("com.example.Person", {"name": "a", "age": 3})),
    ("anything", "java.lang.Object", "anything"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "sig", "expected"), COERCED)
def test_coerce_makes_values_travel_as_declared(value: Any, sig: str, expected: Any) -> None:
    got = coerce(value, sig)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "sig"),
    [("1", "int"), (True, "int"), (1.5, "long"), (None, "int"), (1 << 31, "int"),
     (1, "java.lang.String"), ("ab", "char"), (1, "boolean"), ("x", "[I"), (1, "java.util.Map"),
     (1, "[Q")],
)  # fmt: skip
def test_coerce_refuses_what_java_could_not_take(value: Any, sig: str) -> None:
    with pytest.raises(TypeError):
        coerce(value, sig)


SIGNATURES: list[tuple[Any, str]] = [
    (True, "boolean"), (1, "int"), (1 << 40, "long"), (Long(1), "long"), (Short(1), "short"),
    (Byte(1), "byte"), (1.0, "double"), (Float(1), "float"), (Char("c"), "char"),
    ("s", "java.lang.String"), (b"", "[B"), (None, "java.lang.Object"), ([1], "java.util.List"),
    ({1}, "java.util.Set"), ({}, "java.util.Map"), (TypedList("[int", []), "[I"),
    (TypedList("[string", []), "[Ljava.lang.String;"), (TypedList("[[int", []), "[[I"),
    (TypedList("[com.x.Y", []), "[Lcom.x.Y;"),
    (TypedMap("java.util.TreeMap", {}), "java.util.TreeMap"),
    (JavaObject("com.x.Y"), "com.x.Y"), (datetime.now(UTC), "java.util.Date"),
    (Decimal("1.5"), "java.math.BigDecimal"), (object(), "java.lang.Object"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "sig"), SIGNATURES)
def test_signature_of_guesses_a_java_type(value: Any, sig: str) -> None:
    assert signature_of(value) == sig


def test_signature_of_a_registered_class_is_its_java_name() -> None:
    class Point:
        pass

    registry = ClassRegistry()
    registry.register("com.example.Point", Point, fields=["x"])
    assert signature_of(Point(), registry) == "com.example.Point"


# -- properties ------------------------------------------------------------------------------

ARGS = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda kids: st.lists(kids, max_size=4)
    | st.dictionaries(st.text(max_size=5), kids, max_size=4),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=20), st.lists(ARGS, max_size=5))
def test_requests_round_trip_with_guessed_signatures(method: str, args: list[Any]) -> None:
    sigs = [signature_of(a) for a in args]
    req = SofaRequest(method, sigs, SERVICE, None, {"rpc_trace_context": {"sofaRpcId": "0"}})
    back, got = decode_request(
        encode_request(req, [coerce(a, s) for a, s in zip(args, sigs, strict=True)])
    )
    assert back == req
    assert got == [list(a) if isinstance(a, tuple) else a for a in args]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bodies_give_codec_errors_only(body: bytes) -> None:
    with contextlib.suppress(SofaCodecError):
        decode_request(body)
    try:
        peeked = peek_request(body)
    except HeadUnreadable:
        assert body[:1] == b"C"  # only a Hessian 2 head is refused rather than passed on
    else:
        assert peeked is None or isinstance(peeked, SofaRequest)
    assert isinstance(error_of(body)[0], str)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 300), st.integers(0, 255))
def test_mutated_requests_never_escape_as_other_errors(at: int, byte: int) -> None:
    body = bytearray(frame_of(H4_ADD_REQUEST).body)
    body[at % len(body)] = byte
    with contextlib.suppress(SofaCodecError):
        decode_request(bytes(body))
