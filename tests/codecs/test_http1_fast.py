"""The fast path and h11 agree: every message is read the same whichever path reads it.

A message fed whole goes through the fast path when it is plain; fed byte by
byte, its head arrives in pieces and h11 reads it. Both must give the same
request or response, and the same error for the same bad input.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1 import (
    Http1ClientCodec,
    Http1Limits,
    Http1ServerCodec,
    HttpRequest,
    HttpResponse,
    fast,
)
from sofamesh.codecs.http1.errors import HttpProtocolError

TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'|`^#$%&+",
    min_size=1,
    max_size=12,
)
VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=20,
).map(lambda v: v.strip(" "))
RESERVED = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te"}


@st.composite
def plain_requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    target = "/" + draw(st.text(alphabet="abcxyz019/?=&%-._~", max_size=20))
    fields = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=6))
    fields = [(k, v) for k, v in fields if k.lower() not in RESERVED]
    body = draw(st.binary(max_size=50))
    lines = [f"{method} {target} HTTP/1.1", "Host: svc"]
    lines += [f"{k}:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}{v}" for k, v in fields]
    if body or draw(st.booleans()):
        lines.append(f"Content-Length: {len(body)}")
    if draw(st.booleans()):
        lines.append("Connection: " + draw(st.sampled_from(["close", "keep-alive", "Close"])))
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def read_whole(data: bytes) -> HttpRequest | None:
    codec = Http1ServerCodec()
    codec.receive_data(data)
    return codec.next_request()


def read_bytewise(data: bytes) -> HttpRequest | None:
    codec = Http1ServerCodec()
    for i in range(len(data)):
        codec.receive_data(data[i : i + 1])
        req = codec.next_request()
        if req is not None:
            return req
    return None


def outcome(read: Callable[[bytes], HttpRequest | None], data: bytes) -> object:
    """The request as read, or the status of the error (a target that cannot be normalised)."""
    try:
        req = read(data)
    except HttpProtocolError as e:
        return e.status
    assert req is not None
    return (req.method, req.target, req.headers, req.body, req.http_version)


@settings(max_examples=200, deadline=None)
@given(plain_requests())
def test_plain_requests_read_the_same_by_both_paths(data: bytes) -> None:
    assert fast.split_request(data, Http1Limits()) != fast.DEFER  # really the fast path
    assert outcome(read_whole, data) == outcome(read_bytewise, data)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort",
    ],
)
def test_unusual_requests_go_to_h11_and_end_the_same(data: bytes) -> None:
    assert fast.split_request(data, Http1Limits()) == fast.DEFER
    outcomes = []
    for read in (read_whole, read_bytewise):
        try:
            req = read(data)
            outcomes.append(
                None if req is None else (req.method, req.target, req.headers, req.body)
            )
        except HttpProtocolError as e:
            outcomes.append(e.status)
    assert outcomes[0] == outcomes[1]


def test_fast_path_enforces_limits() -> None:
    limits = Http1Limits(max_body_size=4, max_headers=2)
    with pytest.raises(HttpProtocolError) as info:
        fast.split_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", limits)
    assert info.value.status == 413
    with pytest.raises(HttpProtocolError) as info:
        fast.split_request(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", limits)
    assert info.value.status == 431


def test_pipelined_requests_mix_paths() -> None:
    codec = Http1ServerCodec()
    codec.receive_data(
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
        b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    got = []
    while (req := codec.next_request()) is not None:
        got.append((req.target, req.body))
        codec.encode_response(HttpResponse(200, [], b""))
    assert got == [("/1", b""), ("/2", b"x"), ("/3", b"")]


@st.composite
def plain_responses(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 201, 301, 404, 500, 503]))
    reason = draw(st.sampled_from(["OK", "", "Not Found", "Weird reason text"]))
    fields = [
        (k, v)
        for k, v in draw(st.lists(st.tuples(TOKEN, VALUE), max_size=6))
        if k.lower() not in RESERVED
    ]
    body = draw(st.binary(max_size=50))
    lines = [
        f"HTTP/1.1 {status} {reason}",
        *(f"{k}: {v}" for k, v in fields),
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def response_of(data: bytes, bytewise: bool) -> tuple[object, ...]:
    codec = Http1ClientCodec()
    codec.encode_request(HttpRequest("GET", "/", [(b"host", b"a")], b""))
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        resp = codec.receive_data(chunk)
        if resp is not None:
            return (resp.status, resp.reason, resp.headers, resp.body, codec.reusable)
    raise AssertionError("incomplete")


@settings(max_examples=200, deadline=None)
@given(plain_responses())
def test_plain_responses_read_the_same_by_both_paths(data: bytes) -> None:
    assert fast.split_response(data, Http1Limits()) != fast.DEFER
    assert response_of(data, bytewise=False) == response_of(data, bytewise=True)
