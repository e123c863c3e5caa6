"""What a proxy must refuse (`codecs/http1/strict.py`), fed whole and byte by byte.

Each request is read both ways: whole (the fast path first) and byte by byte
(h11 assembles the head): both must refuse it with the same status, and the
codec must then be closing. Responses with the same ambiguities are refused
by the client side (502) and the connection is not reused.
"""

from __future__ import annotations

import pytest

from sofamesh.codecs.http1 import Http1ClientCodec, Http1ServerCodec, HttpRequest, HttpResponse
from sofamesh.codecs.http1.errors import HttpProtocolError
from sofamesh.codecs.http1.messages import drop_connection_options

H = b"Host: a\r\n"
REFUSED = [
    (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Content-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        400,
    ),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 1\r\n\r\nx", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    (b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 400),
    (b"GET / HTTP/0.9\r\n" + H + b"\r\n", 400),
    (b"GET svc:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET /a%2Fb HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET /a%zz HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET / HTTP/1.1\n" + H.replace(b"\r", b"") + b"\n", 400),
    (b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n1;"
        + b"e" * 5000
        + b"\r\nx\r\n0\r\n\r\n",
        400,
    ),
]


def outcome(data: bytes, bytewise: bool) -> tuple[object, bool]:
    codec = Http1ServerCodec()
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    try:
        for piece in pieces:
            codec.receive_data(piece)
            if codec.next_request() is not None:
                return "accepted", codec.must_close
    except HttpProtocolError as e:
        return e.status, codec.must_close
    return None, codec.must_close


@pytest.mark.parametrize(("data", "status"), REFUSED)
def test_refused_whole_and_bytewise(data: bytes, status: int) -> None:
    assert outcome(data, bytewise=False) == (status, True)
    assert outcome(data, bytewise=True) == (status, True)


def test_absolute_form_becomes_origin_form_and_its_authority_the_host() -> None:
    codec = Http1ServerCodec()
    codec.receive_data(b"GET http://svc/orders/./export?x HTTP/1.1\r\nHost: other\r\n\r\n")
    req = codec.next_request()
    assert req is not None and (req.target, req.headers) == (
        "/orders/export?x",
        [(b"host", b"svc")],
    )


def test_fields_named_by_connection_do_not_leave_the_codec() -> None:
    codec = Http1ServerCodec()
    codec.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Hop, host\r\nX-Hop: 1\r\n\r\n")
    req = codec.next_request()
    assert req is not None and req.headers == [(b"host", b"a"), (b"connection", b"X-Hop, host")]
    plain = [(b"connection", b"keep-alive"), (b"x", b"1")]
    assert drop_connection_options(plain) is plain


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: a\r\n b\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: a\x01\r\n\r\nx",
        b"HTTP/1.1 100 Continue\r\nX: \x02\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/2.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
    ],
)
@pytest.mark.parametrize("bytewise", [False, True])
def test_ambiguous_responses_are_refused(data: bytes, bytewise: bool) -> None:
    codec = Http1ClientCodec()
    codec.encode_request(HttpRequest("GET", "/"), host=b"a")
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    with pytest.raises(HttpProtocolError) as info:
        for piece in pieces:
            codec.receive_data(piece)
    assert info.value.status == 502 and not codec.reusable


def test_a_response_with_a_connection_option_loses_the_field() -> None:
    codec = Http1ClientCodec()
    codec.encode_request(HttpRequest("GET", "/"), host=b"a")
    resp = codec.receive_data(
        b"HTTP/1.1 200 OK\r\nConnection: x-up\r\nX-Up: 1\r\nContent-Length: 0\r\n\r\n"
    )
    assert resp == HttpResponse(
        200, [(b"connection", b"x-up"), (b"content-length", b"0")], b"", b"OK"
    )
