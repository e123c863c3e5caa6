"""gRPC framing, grpc-timeout, grpc-message, status mapping (codecs/grpc.py) and heads."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.grpc import (
    GrpcFramingError,
    GrpcStatus,
    MessageDecoder,
    MethodPath,
    code_of,
    code_of_reset,
    decode_grpc_message,
    encode_grpc_message,
    encode_message,
    format_timeout,
    parse_timeout,
    status_of,
)
from sofamesh.codecs.grpc_heads import (
    outcome_of,
    read_request,
    request_headers,
    status_trailers,
)
from sofamesh.model import Status

# -- framing ----------------------------------------------------------------------------


def test_message_prefix_is_flag_and_big_endian_length() -> None:
    assert encode_message(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_message(b"", compressed=True) == b"\x01\x00\x00\x00\x00"


def test_decoder_waits_for_the_whole_message_across_chunks() -> None:
    d = MessageDecoder()
    wire = encode_message(b"hello") + encode_message(b"") + encode_message(b"x" * 70000)
    assert d.feed(wire[:3]) == []
    assert d.feed(wire[3:9]) == []
    assert d.feed(wire[9:15]) == [b"hello", b""]
    assert d.feed(wire[15:]) == [b"x" * 70000]
    assert d.pending == 0


@settings(max_examples=60)
@given(
    messages=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
)
def test_decoder_round_trips_any_chunking(messages: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_message(m) for m in messages)
    bounds = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    d = MessageDecoder()
    out: list[bytes] = []
    for a, b in itertools.pairwise(bounds):
        out += d.feed(wire[a:b])
    assert out == messages
    assert d.pending == 0


def test_oversized_message_is_refused_from_its_prefix() -> None:
    d = MessageDecoder(max_message=10)
    with pytest.raises(GrpcFramingError) as exc:
        d.feed(encode_message(b"x" * 11)[:5])  # the length alone decides
    assert exc.value.status is GrpcStatus.RESOURCE_EXHAUSTED


def test_compressed_message_without_encoding_is_internal() -> None:
    with pytest.raises(GrpcFramingError) as exc:
        MessageDecoder().feed(encode_message(b"z", compressed=True))
    assert exc.value.status is GrpcStatus.INTERNAL
    assert MessageDecoder(allow_compressed=True).feed(encode_message(b"z", True)) == [b"z"]


@settings(max_examples=80)
@given(st.binary(max_size=200))
def test_decoder_on_garbage_yields_or_refuses_never_crashes(data: bytes) -> None:
    d = MessageDecoder(max_message=64)
    try:
        for m in d.feed(data):
            assert len(m) <= 64
    except GrpcFramingError as e:
        assert e.status in (GrpcStatus.INTERNAL, GrpcStatus.RESOURCE_EXHAUSTED)


# -- grpc-timeout -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("1S", 1.0), ("250m", 0.25), ("3M", 180.0), ("2H", 7200.0), ("5u", 5e-6), ("7n", 7e-9)],
)
def test_parse_timeout_units(raw: str, seconds: float) -> None:
    assert parse_timeout(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["", "S", "1", "1s", "123456789S", "-1S", "1.5S", "\u0661S"])
def test_parse_timeout_rejects_malformed(raw: str) -> None:
    assert parse_timeout(raw) is None


@settings(max_examples=100)
@given(st.floats(min_value=0, max_value=10_000_000, allow_nan=False))
def test_format_timeout_is_parseable_and_never_shorter(seconds: float) -> None:
    raw = format_timeout(seconds)
    assert len(raw) <= 9
    back = parse_timeout(raw)
    assert back is not None
    assert back >= seconds * (1 - 1e-9) - 1e-9
    assert back <= max(seconds * 1.001, seconds + 1e-6) or raw.endswith(("M", "H"))


# -- grpc-message -----------------------------------------------------------------------


def test_grpc_message_percent_encodes_outside_printable_ascii() -> None:
    assert encode_grpc_message("50% ok\n") == "50%25 ok%0A"
    assert encode_grpc_message("é") == "%C3%A9"


@settings(max_examples=80)
@given(st.text(max_size=50))
def test_grpc_message_round_trips(text: str) -> None:
    encoded = encode_grpc_message(text)
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert decode_grpc_message(encoded) == text


# -- statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (Status.NO_ENDPOINT, GrpcStatus.UNAVAILABLE),
        (Status.CONNECT_FAILED, GrpcStatus.UNAVAILABLE),
        (Status.TIMEOUT, GrpcStatus.DEADLINE_EXCEEDED),
        (Status.RATE_LIMITED, GrpcStatus.RESOURCE_EXHAUSTED),
        (Status.OVERLOADED, GrpcStatus.RESOURCE_EXHAUSTED),
        (Status.UNAUTHORIZED, GrpcStatus.PERMISSION_DENIED),
        (Status.CIRCUIT_OPEN, GrpcStatus.UNAVAILABLE),
        (Status.INTERNAL, GrpcStatus.INTERNAL),
    ],
)
def test_mesh_failures_map_to_the_issues_codes(status: Status, code: GrpcStatus) -> None:
    assert code_of(status) == code
    assert code_of(status, 9) == 9  # a rule's explicit code wins


def test_provider_codes_classify_like_envoys_5xx() -> None:
    assert status_of(0) is Status.OK
    assert status_of(GrpcStatus.NOT_FOUND) is Status.OK  # the caller's problem, not the host's
    assert status_of(GrpcStatus.UNAVAILABLE) is Status.APP_ERROR
    assert status_of(GrpcStatus.INTERNAL) is Status.APP_ERROR
    assert status_of(GrpcStatus.DEADLINE_EXCEEDED) is Status.TIMEOUT
    assert status_of(99) is Status.APP_ERROR
    assert all(status_of(c) in (Status.OK, Status.APP_ERROR, Status.TIMEOUT) for c in range(17))


def test_reset_codes_map_as_grpc_clients_report_them() -> None:
    assert code_of_reset(0x8) is GrpcStatus.CANCELLED
    assert code_of_reset(0x7) is GrpcStatus.UNAVAILABLE
    assert code_of_reset(0xB) is GrpcStatus.RESOURCE_EXHAUSTED
    assert code_of_reset(0x2) is GrpcStatus.INTERNAL


def test_outcome_from_trailers_and_from_trailers_only() -> None:
    head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    ok = outcome_of(head, [(b"grpc-status", b"0")])
    assert (ok.status, ok.code) == (Status.OK, 0)
    bad = outcome_of([*head, (b"grpc-status", b"14"), (b"grpc-message", b"down%21")], [])
    assert (bad.status, bad.code, bad.message) == (Status.APP_ERROR, 14, "down!")
    missing = outcome_of(head, [])
    assert missing.code == GrpcStatus.UNKNOWN
    http = outcome_of([(b":status", b"503")], [])
    assert http.code == GrpcStatus.UNAVAILABLE


def test_a_mesh_hop_that_never_reached_the_app_reads_as_connect_failed() -> None:
    trailers = status_trailers(14, "no endpoint", Status.NO_ENDPOINT)
    out = outcome_of([(b":status", b"200")], trailers)
    assert (out.status, out.code) == (Status.CONNECT_FAILED, 14)
    app = outcome_of([(b":status", b"200")], status_trailers(14, "app says down"))
    assert app.status is Status.APP_ERROR


# -- requests ---------------------------------------------------------------------------

BASE = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/pkg.Orders/Get"),
    (b":authority", b"127.0.0.1:15001"),
    (b"content-type", b"application/grpc+proto"),
    (b"te", b"trailers"),
]


def test_a_grpc_service_comes_from_the_path_and_the_header_may_only_repeat_it() -> None:
    assert read_request(BASE).service == "pkg.Orders"
    assert not read_request(BASE).refused
    same = read_request([*BASE, (b"x-sofamesh-service", b"pkg.Orders")])
    assert (same.service, same.refused) == ("pkg.Orders", "")
    other = read_request([*BASE, (b"x-sofamesh-service", b"com.example.Orders")])
    assert other.service == "pkg.Orders" and "contradicts" in other.refused
    no_path = [(k, b"/" if k == b":path" else v) for k, v in BASE]
    assert "not a gRPC method path" in read_request(no_path).refused


@pytest.mark.parametrize(
    ("path", "normalised"),
    [
        (b"//pkg.Orders/Get", "/pkg.Orders/Get"),
        (b"/pkg.Other/../pkg.Orders/Get", "/pkg.Orders/Get"),
        (b"/pkg.%4Frders/Get", "/pkg.Orders/Get"),
        (b"/pkg.Orders/./Get", "/pkg.Orders/Get"),
    ],
)
def test_a_grpc_path_is_normalised_before_its_service_is_read(path: bytes, normalised: str) -> None:
    raw = [(k, path if k == b":path" else v) for k, v in BASE]
    head = read_request([*raw, (b"x-sofamesh-service", b"pkg.Orders")])
    assert (head.path, head.service, head.refused) == (normalised, "pkg.Orders", "")


@pytest.mark.parametrize("path", [b"/pkg.Orders%2FGet", b"/pkg.Orders/G%zz", b"/pkg.Orders/Get#x"])
def test_a_grpc_path_that_cannot_be_normalised_is_refused(path: bytes) -> None:
    raw = [(k, path if k == b":path" else v) for k, v in BASE]
    assert read_request(raw).refused


def test_plain_h2c_keeps_the_service_header_then_path_then_authority() -> None:
    plain = [(k, v) for k, v in BASE if k != b"content-type"]
    named = read_request([*plain, (b"x-sofamesh-service", b"com.example.Orders")])
    assert (named.service, named.refused) == ("com.example.Orders", "")
    no_path = [(k, b"/" if k == b":path" else v) for k, v in plain]
    assert read_request(no_path).service == "127.0.0.1"
    head = read_request([*BASE, (b"grpc-timeout", b"150m"), (b"x-sofamesh-caller", b"shop")])
    assert head.is_grpc and head.timeout == pytest.approx(0.15) and head.caller == "shop"
    assert not read_request([(b":path", b"/x"), (b"content-type", b"text/plain")]).is_grpc


def test_request_headers_rewrite_the_per_hop_fields() -> None:
    meta = [("content-type", "application/grpc"), ("te", "x"), ("grpc-timeout", "9S"), ("a", "1")]
    raw = request_headers(
        "/pkg.Orders/Get", "", meta, service="pkg.Orders", caller="shop", timeout=0.5
    )
    assert raw[:5] == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/pkg.Orders/Get"),
        (b":authority", b"pkg.Orders"),
        (b"te", b"trailers"),
    ]
    rest = dict(raw[5:])
    assert rest[b"grpc-timeout"] == b"500000u"
    assert rest[b"x-sofamesh-service"] == b"pkg.Orders"
    assert rest[b"x-sofamesh-caller"] == b"shop"
    assert rest[b"a"] == b"1"
    assert [k for k, _ in raw].count(b"te") == 1


def test_method_path() -> None:
    assert MethodPath.parse("/a.B/C") == MethodPath("a.B", "C")
    for bad in ("a.B/C", "/a.B", "/a.B/", "//C", "/a/B/C"):
        assert MethodPath.parse(bad) is None


def test_a_repeated_request_head_is_remembered_and_immutable() -> None:
    raw = [*BASE, (b"x-trace", b"1")]
    first, again = read_request(raw), read_request(list(raw))
    assert again is first  # the same block: split once
    assert isinstance(first.metadata, tuple) and ("x-trace", "1") in first.metadata
    assert read_request([*BASE, (b"x-trace", b"2")]).metadata != first.metadata
    big = read_request([*BASE, (b"x-big", b"v" * 5000)])  # too large to remember
    assert read_request([*BASE, (b"x-big", b"v" * 5000)]) is not big


def test_the_next_hops_deadline_comes_last_and_the_rest_is_reused() -> None:
    meta = [("content-type", "application/grpc"), ("x-trace", "1")]
    first = request_headers("/p.S/M", "a", meta, service="p.S", caller="c", timeout=1.5)
    again = request_headers("/p.S/M", "a", meta, service="p.S", caller="c", timeout=2.0)
    assert first[-1] == (b"grpc-timeout", b"1500000u") and again[-1] == (
        b"grpc-timeout",
        b"2000000u",
    )
    assert first[:-1] == again[:-1] and first[:-1] is not again[:-1]
    first.append((b"x-mutated", b"by the caller"))
    plain = request_headers("/p.S/M", "a", meta, service="p.S", caller="c", timeout=None)
    assert plain == again[:-1]


def test_a_repeated_response_has_the_same_outcome() -> None:
    head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    first = outcome_of(head, [(b"grpc-status", b"5"), (b"grpc-message", b"no%20such")])
    again = outcome_of(list(head), [(b"grpc-status", b"5"), (b"grpc-message", b"no%20such")])
    assert again is first and (first.code, first.message) == (5, "no such")
    assert outcome_of(head, [(b"grpc-status", b"0")]).code == 0
