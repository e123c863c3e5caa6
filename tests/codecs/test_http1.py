"""HTTP/1.1 codecs: a client and a server codec paired through in-memory bytes."""

from __future__ import annotations

import http
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1 import (
    Http1ClientCodec,
    Http1Limits,
    Http1ServerCodec,
    HttpIncompleteMessage,
    HttpProtocolError,
    HttpRequest,
    HttpResponse,
    headers_from_neutral,
    headers_to_neutral,
    looks_like_http1,
    strip_hop_by_hop,
)
from sofamesh.codecs.http1.paths import normalize_target
from sofamesh.codecs.http1.writer import encode_response
from sofamesh.model import Headers

GET = HttpRequest("GET", "/a?b=1", [(b"host", b"svc"), (b"accept", b"*/*")])
OK_TEXT = HttpResponse(200, [(b"content-type", b"text/plain")], b"hi")


def parse_all(codec: Http1ServerCodec, data: bytes) -> list[HttpRequest]:
    codec.receive_data(data)
    out = []
    while (req := codec.next_request()) is not None:
        out.append(req)
    return out


def one(codec: Http1ServerCodec, data: bytes) -> HttpRequest:
    (req,) = parse_all(codec, data)
    return req


def error_of(data: bytes, limits: Http1Limits | None = None) -> HttpProtocolError:
    codec = Http1ServerCodec(limits or Http1Limits())
    with pytest.raises(HttpProtocolError) as info:
        parse_all(codec, data)
    return info.value


# -- exact bytes, both directions ------------------------------------------


def test_get_exchange_exact_bytes() -> None:
    client, server = Http1ClientCodec(), Http1ServerCodec()
    wire = client.encode_request(GET)
    assert wire == b"GET /a?b=1 HTTP/1.1\r\nhost: svc\r\naccept: */*\r\n\r\n"
    assert one(server, wire) == GET
    out = server.encode_response(OK_TEXT)
    assert out == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi"
    resp = client.receive_data(out)
    assert resp == HttpResponse(
        200, [(b"content-type", b"text/plain"), (b"content-length", b"2")], b"hi", b"OK"
    )
    assert client.reusable and not server.must_close


def test_post_gets_content_length_and_default_host() -> None:
    client = Http1ClientCodec()
    wire = client.encode_request(HttpRequest("POST", "/p", [], b"abc"), host=b"h:81")
    assert wire == b"POST /p HTTP/1.1\r\nhost: h:81\r\ncontent-length: 3\r\n\r\nabc"
    empty = Http1ClientCodec().encode_request(HttpRequest("PUT", "/p", [(b"host", b"x")]))
    assert empty == b"PUT /p HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"


def test_callers_framing_headers_are_replaced() -> None:
    req = HttpRequest(
        "POST",
        "/",
        [(b"host", b"x"), (b"content-length", b"99"), (b"transfer-encoding", b"chunked")],
        b"ab",
    )
    wire = Http1ClientCodec().encode_request(req)
    assert wire == b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nab"


def test_keep_alive_carries_many_exchanges() -> None:
    client, server = Http1ClientCodec(), Http1ServerCodec()
    for i in range(3):
        req = HttpRequest("POST", f"/{i}", [(b"host", b"x")], b"n%d" % i)
        got = one(server, client.encode_request(req))
        assert got.target == f"/{i}" and got.body == b"n%d" % i
        resp = client.receive_data(server.encode_response(HttpResponse(200, [], got.body)))
        assert resp is not None and resp.body == b"n%d" % i
    assert client.reusable and not server.must_close


def test_pipelined_requests_are_answered_in_order() -> None:
    server = Http1ServerCodec()
    head = b"HEAD /1 HTTP/1.1\r\nhost: x\r\n\r\n"
    get = b"GET /2 HTTP/1.1\r\nhost: x\r\n\r\n"
    first = one_then_more(server, head + get)
    assert first.method == "HEAD" and server.unanswered == 1
    # The HEAD answer carries the length a GET would have, but no body.
    assert server.encode_response(HttpResponse(200, [], b"body")) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"
    )
    second = server.next_request()
    assert second is not None and second.target == "/2"
    assert server.encode_response(HttpResponse(200, [], b"body")).endswith(b"\r\n\r\nbody")


def one_then_more(server: Http1ServerCodec, data: bytes) -> HttpRequest:
    server.receive_data(data)
    req = server.next_request()
    assert req is not None
    return req


def test_connection_close_request_is_the_last() -> None:
    server = Http1ServerCodec()
    data = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n"
    assert [r.target for r in parse_all(server, data)] == ["/"]
    out = server.encode_response(HttpResponse(204))
    assert out == b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
    assert server.must_close and server.next_request() is None


def test_http10_request_closes_after_one_response() -> None:
    server = Http1ServerCodec()
    req = one(server, b"GET / HTTP/1.0\r\n\r\n")
    assert req.http_version == "1.0"
    assert server.encode_response(OK_TEXT).endswith(b"connection: close\r\n\r\nhi")
    assert server.must_close


def test_response_asking_to_close_ends_the_connection() -> None:
    server = Http1ServerCodec()
    one(server, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    server.encode_response(HttpResponse(200, [(b"connection", b"Keep-Alive, Close")]))
    assert server.must_close


def test_chunked_request_body_is_assembled() -> None:
    data = (
        b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n"
    )
    req = one(Http1ServerCodec(), data)
    assert req.body == b"abcdefg"
    assert (b"transfer-encoding", b"chunked") in req.headers


def test_request_split_at_every_byte() -> None:
    data = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    server = Http1ServerCodec()
    got = [r for i in range(len(data)) for r in parse_all(server, data[i : i + 1])]
    assert got == [
        HttpRequest("POST", "/x", [(b"host", b"x"), (b"content-length", b"5")], b"hello")
    ]


def test_expect_100_continue() -> None:
    server = Http1ServerCodec()
    head = b"PUT /u HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    assert parse_all(server, head) == [] and server.phase == "body"
    assert server.wants_continue
    assert server.encode_continue() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not server.wants_continue
    assert one(server, b"ok").body == b"ok"


def test_phase_follows_the_next_request() -> None:
    server = Http1ServerCodec()
    assert server.phase == "idle"
    server.receive_data(b"GET / HT")
    assert server.next_request() is None and server.phase == "head"
    assert one(server, b"TP/1.1\r\nhost: x\r\n\r\n").target == "/"
    assert server.phase == "idle"


# -- limits and malformed input ----------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host (RFC 9112 §3.2)
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n",
    ],
)
def test_malformed_request_is_400(data: bytes) -> None:
    assert error_of(data).status == 400


def test_oversized_head_is_431() -> None:
    err = error_of(b"GET /" + b"a" * 2000, Http1Limits(max_header_bytes=1024))
    assert err.status == 431
    whole = b"GET / HTTP/1.1\r\nhost: x\r\nx: " + b"a" * 2000 + b"\r\n\r\n"  # complete, in one read
    assert error_of(whole, Http1Limits(max_header_bytes=1024)).status == 431
    many = b"GET / HTTP/1.1\r\nhost: x\r\n" + b"x: y\r\n" * 5 + b"\r\n"
    assert error_of(many, Http1Limits(max_headers=5)).status == 431


def test_body_over_the_limit_is_413_before_it_arrives() -> None:
    head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n"
    assert error_of(head, Http1Limits(max_body_size=10)).status == 413
    chunked = (
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n"
    )
    assert error_of(chunked, Http1Limits(max_body_size=10)).status == 413


@pytest.mark.parametrize(
    "data",
    [
        b"CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n",
    ],
)
def test_unsupported_is_501(data: bytes) -> None:
    assert error_of(data).status == 501


def test_the_codec_stays_failed_and_answers_with_an_error_page() -> None:
    server = Http1ServerCodec()
    with pytest.raises(HttpProtocolError) as info:
        parse_all(server, b"nonsense\r\n\r\n")
    with pytest.raises(HttpProtocolError):
        server.next_request()
    page = server.encode_error(info.value)
    assert page.startswith(
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    )
    assert b"connection: close\r\n\r\n" in page and server.must_close


def test_eof_between_requests_is_clean_and_mid_request_is_incomplete() -> None:
    server = Http1ServerCodec()
    one(server, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    server.receive_data(b"")
    assert server.next_request() is None and server.unanswered == 1
    server.encode_response(OK_TEXT)
    assert server.must_close
    cut = Http1ServerCodec()
    cut.receive_data(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 9\r\n\r\nabc")
    cut.receive_data(b"")
    with pytest.raises(HttpIncompleteMessage):
        cut.next_request()


def test_response_without_a_request_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        Http1ServerCodec().encode_response(OK_TEXT)


# -- response encoding rules ---------------------------------------------------


def answer(response: HttpResponse, request: bytes = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n") -> bytes:
    server = Http1ServerCodec()
    one(server, request)
    return server.encode_response(response)


def test_204_and_304_framing() -> None:
    assert answer(HttpResponse(204, [(b"content-length", b"3")], b"abc")) == (
        b"HTTP/1.1 204 No Content\r\n\r\n"
    )
    assert answer(HttpResponse(304, [(b"content-length", b"7")], b"x")) == (
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 7\r\n\r\n"
    )


def test_custom_reason_and_unknown_status() -> None:
    assert answer(HttpResponse(299, [], b"", b"Fine Thanks")).startswith(
        b"HTTP/1.1 299 Fine Thanks\r\n"
    )
    assert answer(HttpResponse(599)).startswith(b"HTTP/1.1 599 \r\n")


@pytest.mark.parametrize(
    "response",
    [
        HttpResponse(200, [(b"x-evil", b"a\r\nset-cookie: stolen=1")]),
        HttpResponse(200, [(b"x-evil", b"a\nb")]),
        HttpResponse(200, [(b"x-nul", b"a\x00b")]),
        HttpResponse(200, [(b"bad name", b"v")]),
        HttpResponse(200, [(b"name:colon", b"v")]),
        HttpResponse(200, [], b"", b"bad\r\nreason"),
        HttpResponse(100),
    ],
)
def test_invalid_responses_are_refused_and_the_request_stays_unanswered(
    response: HttpResponse,
) -> None:
    server = Http1ServerCodec()
    one(server, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    with pytest.raises(ValueError):
        server.encode_response(response)
    assert server.unanswered == 1
    assert server.encode_response(HttpResponse(500)).startswith(b"HTTP/1.1 500 ")


@pytest.mark.parametrize(
    "request_",
    [
        HttpRequest("GET", "/a b", [(b"host", b"x")]),
        HttpRequest("G ET", "/", [(b"host", b"x")]),
        HttpRequest("GET", "/", [(b"host", b"x\r\ny: z")]),
    ],
)
def test_invalid_requests_are_refused(request_: HttpRequest) -> None:
    with pytest.raises(ValueError):
        Http1ClientCodec().encode_request(request_)


# -- client side ---------------------------------------------------------------


def exchange(request: HttpRequest, wire: bytes) -> tuple[HttpResponse | None, Http1ClientCodec]:
    client = Http1ClientCodec()
    client.encode_request(request)
    return client.receive_data(wire), client


def test_head_response_ends_after_the_header_section() -> None:
    head = HttpRequest("HEAD", "/", [(b"host", b"x")])
    resp, client = exchange(head, b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n")
    assert resp is not None and resp.body == b"" and client.reusable


def test_interim_responses_are_skipped() -> None:
    wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
    resp, _ = exchange(GET, wire + b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nz")
    assert resp is not None and (resp.status, resp.body) == (200, b"z")


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",  # unasked-for bytes
    ],
)
def test_response_that_ends_the_connection(wire: bytes) -> None:
    resp, client = exchange(GET, wire)
    assert resp is not None and not client.reusable


def test_request_asking_to_close_makes_the_connection_unusable() -> None:
    client = Http1ClientCodec()
    client.encode_request(HttpRequest("GET", "/", [(b"host", b"x"), (b"connection", b"close")]))
    assert client.receive_data(b"HTTP/1.1 204 No Content\r\n\r\n") is not None
    assert not client.reusable
    with pytest.raises(RuntimeError):
        client.encode_request(GET)


def test_body_delimited_by_eof() -> None:
    client = Http1ClientCodec()
    client.encode_request(GET)
    assert client.receive_data(b"HTTP/1.1 200 OK\r\n\r\nsome") is None
    assert client.response_started
    resp = client.receive_data(b"")
    assert resp is not None and resp.body == b"some" and not client.reusable


def test_eof_mid_response_is_incomplete() -> None:
    client = Http1ClientCodec()
    client.encode_request(GET)
    assert client.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc") is None
    with pytest.raises(HttpIncompleteMessage):
        client.receive_data(b"")
    assert not client.reusable


@pytest.mark.parametrize(
    ("limits", "wire"),
    [
        (Http1Limits(), b"HTTP/1.1 abc\r\n\r\n"),
        (Http1Limits(max_body_size=3), b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"),
        (Http1Limits(max_body_size=3), b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 4),
        (Http1Limits(max_header_bytes=64), b"HTTP/1.1 200 OK\r\n" + b"x: y\r\n" * 40),
        (Http1Limits(max_header_bytes=64), b"HTTP/1.1 200 OK\r\nx: " + b"y" * 80 + b"\r\n\r\n"),
        (Http1Limits(), b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n"),
    ],
)
def test_bad_upstream_response_is_a_502(limits: Http1Limits, wire: bytes) -> None:
    client = Http1ClientCodec(limits)
    client.encode_request(GET)
    with pytest.raises(HttpProtocolError) as info:
        client.receive_data(wire)
    assert info.value.status == 502 and not client.reusable


def test_client_refuses_a_second_request_while_busy() -> None:
    client = Http1ClientCodec()
    client.encode_request(GET)
    with pytest.raises(RuntimeError):
        client.encode_request(GET)


# -- helpers -------------------------------------------------------------------


def test_neutral_headers_round_trip_bytes_exactly() -> None:
    raw = [(b"x-a", b"1"), (b"x-a", b"caf\xe9"), (b"host", b"h")]
    neutral = headers_to_neutral(raw)
    assert neutral == Headers([("x-a", "1"), ("x-a", "café"), ("host", "h")])
    assert headers_from_neutral(neutral) == raw


def test_strip_hop_by_hop() -> None:
    raw = [
        (b"connection", b"keep-alive, X-Trace"),
        (b"x-trace", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-authorization", b"Basic x"),
        (b"transfer-encoding", b"chunked"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"content-type", b"text/plain"),
        (b"x-keep", b"yes"),
    ]
    assert strip_hop_by_hop(raw) == [(b"content-type", b"text/plain"), (b"x-keep", b"yes")]


@pytest.mark.parametrize(
    ("prefix", "verdict"),
    [
        (b"GET / HTTP/1.1\r\n", True),
        (b"POS", None),
        (b"PRI * HTTP/2.0\r\n", False),
        (b"PRI", None),
        (b"\x01\x01\x00", False),  # a SOFA Bolt request
        (b"\xda\xbb", False),  # Dubbo's magic
    ],
)
def test_matcher(prefix: bytes, verdict: bool | None) -> None:
    assert looks_like_http1(prefix) is verdict


# -- properties ------------------------------------------------------------------

TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~", min_size=1, max_size=12)
VALUE = st.binary(max_size=20).map(lambda b: bytes(c for c in b if c > 0x20 and c != 0x7F))
FIELDS = st.lists(
    st.tuples(TOKEN.map(str.encode), VALUE).filter(
        lambda f: (
            f[0] not in (b"host", b"content-length", b"transfer-encoding", b"connection")
            and not f[0].startswith(b"expect")
        )
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    method=TOKEN.map(str.upper),
    target=st.text("abcdefghijklmnopqrstuvwxyz/?=&.0123456789", min_size=1).map(lambda t: "/" + t),
    fields=FIELDS,
    body=st.binary(max_size=64),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=4),
)
def test_any_valid_request_survives_the_round_trip(
    method: str, target: str, fields: list[tuple[bytes, bytes]], body: bytes, cuts: list[int]
) -> None:
    if method in ("CONNECT", "HEAD"):
        method = "GET"
    wire = Http1ClientCodec().encode_request(HttpRequest(method, target, fields, body), host=b"h")
    server = Http1ServerCodec()
    bounds = [0, *sorted(c % (len(wire) + 1) for c in cuts), len(wire)]
    pieces = [wire[a:b] for a, b in itertools.pairwise(bounds) if a < b]  # b"" is EOF
    got = [r for piece in pieces for r in parse_all(server, piece)]
    assert len(got) == 1
    req = got[0]
    # The server hands over the normalised path (dot segments, doubled slashes).
    assert (req.method, req.target, req.body) == (method, normalize_target(target), body)
    framing = (
        [(b"content-length", b"%d" % len(body))]
        if body or method in ("POST", "PUT", "PATCH")
        else []
    )
    assert req.headers == [*fields, (b"host", b"h"), *framing]


@settings(max_examples=150, deadline=None)
@given(
    status=st.integers(200, 599).filter(lambda s: s not in (204, 304)),
    fields=FIELDS,
    body=st.binary(max_size=64),
)
def test_any_valid_response_survives_the_round_trip(
    status: int, fields: list[tuple[bytes, bytes]], body: bytes
) -> None:
    client, server = Http1ClientCodec(), Http1ServerCodec()
    one(server, client.encode_request(GET))
    resp = client.receive_data(server.encode_response(HttpResponse(status, fields, body)))
    assert resp is not None
    assert (resp.status, resp.body) == (status, body)
    assert resp.headers == [*fields, (b"content-length", b"%d" % len(body))]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_random_bytes_only_ever_raise_protocol_errors(chunks: list[bytes]) -> None:
    server = Http1ServerCodec(Http1Limits(max_header_bytes=256, max_body_size=64, max_headers=8))
    try:
        for chunk in chunks:
            for req in parse_all(server, chunk):
                assert isinstance(req, HttpRequest)
                server.encode_response(OK_TEXT)
        parse_all(server, b"")
    except HttpProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_random_upstream_bytes_only_ever_raise_protocol_errors(chunks: list[bytes]) -> None:
    client = Http1ClientCodec(Http1Limits(max_header_bytes=256, max_body_size=64, max_headers=8))
    client.encode_request(GET)
    try:
        for chunk in [*chunks, b""]:
            if client.receive_data(chunk) is not None:
                break
    except HttpProtocolError:
        assert not client.reusable


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=10).filter(lambda b: any(c in b for c in b"\r\n\x00")))
def test_no_value_can_smuggle_a_line_break(value: bytes) -> None:
    with pytest.raises(ValueError):
        answer(HttpResponse(200, [(b"x", b"a" + value + b"a")]))


SEEDS = [
    b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n",
    b"POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc",
    b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"PUT /d HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\nz",
    b"GET /e HTTP/1.0\r\nconnection: keep-alive\r\n\r\n",
]


@settings(max_examples=300, deadline=None)
@given(
    seeds=st.lists(st.sampled_from(SEEDS), min_size=1, max_size=3),
    edits=st.lists(
        st.tuples(st.integers(0, 300), st.binary(max_size=3), st.booleans()), max_size=4
    ),
)
def test_mutated_requests_only_ever_raise_protocol_errors(
    seeds: list[bytes], edits: list[tuple[int, bytes, bool]]
) -> None:
    data = bytearray(b"".join(seeds))
    for pos, blob, replace in edits:
        at = pos % (len(data) + 1)
        data[at : at + (len(blob) if replace else 0)] = blob
    server = Http1ServerCodec(Http1Limits(max_header_bytes=256, max_body_size=64, max_headers=8))
    try:
        for req in parse_all(server, bytes(data)):
            assert isinstance(req, HttpRequest)
            server.encode_response(OK_TEXT)
        parse_all(server, b"")
    except HttpProtocolError:
        pass


def test_resting_is_the_idle_phase_of_a_connection_that_stays_open() -> None:
    def resting(codec: Http1ServerCodec) -> bool:
        assert codec.resting() is (codec.phase == "idle" and not codec.must_close)
        return codec.resting()

    server = Http1ServerCodec()
    assert resting(server)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert server.next_request() is None and not resting(server)  # a head in pieces
    server.receive_data(b"\r\n")
    assert server.next_request() is not None
    server.encode_response(HttpResponse(200))
    assert resting(server)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert server.next_request() is not None
    server.encode_response(HttpResponse(200))
    assert server.must_close and not resting(server)


@pytest.mark.parametrize("status", [*(s for s in http.HTTPStatus if s >= 200), 299, 599])
def test_a_status_without_a_reason_gets_the_standard_phrase_or_none(status: int) -> None:
    # The phrase is `http.HTTPStatus`'s, looked up with the first such line (the `http`
    # module stays unloaded until then); a code it does not name gets an empty reason.
    phrase = http.HTTPStatus(status).phrase if status in set(http.HTTPStatus) else ""
    expected = b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("ascii"))
    out, _ = encode_response(HttpResponse(int(status), [], b""), head=False, close=False)
    assert out.startswith(expected)
