"""llhttp (httptools) and the pure-Python fast path split a response head alike.

With `httptools` importable the fast path hands a head's field lines to
llhttp; these tests hold it to the pure path's grammar: on every generated
head, including ones with bytes the grammar refuses, both give the same
fields (marked checked) or both refuse, and `split_request` and
`split_response` answer the same whichever reads the fields.
`SOFAMESH_PURE_PYTHON=1` turns llhttp off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httptools
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1 import (
    Http1ClientCodec,
    Http1Limits,
    Http1ServerCodec,
    HttpRequest,
    fast,
)
from sofamesh.codecs.http1.errors import HttpProtocolError
from sofamesh.codecs.http1.messages import ParsedFields

TOKEN_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'|`^#$%&+"
# Mostly token characters, sometimes a byte no name may hold.
NAME = st.binary(min_size=0, max_size=8).map(
    lambda raw: bytes(TOKEN_CHARS[b % len(TOKEN_CHARS)] if b < 200 else b - 200 for b in raw)
)
# Mostly what a value may hold, sometimes any byte but CR and LF (controls, DEL, obs-text).
VALUE = st.one_of(
    st.binary(max_size=16).map(lambda raw: bytes(0x20 + b % 0x5F for b in raw)),
    st.binary(max_size=16).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")),
)
FRAMING = {b"content-length", b"transfer-encoding"}
# Line breaks the grammar refuses, now and then in place of CRLF.
EOL = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r\n ", b"\r\n\t", b"\r"])


@st.composite
def field_blocks(draw: st.DrawFn) -> bytes:
    """Field lines ending in CRLF, none a framing field (llhttp judges those itself)."""
    lines = draw(st.lists(st.tuples(NAME, st.sampled_from([b":", b": ", b":\t", b" :"]), VALUE)))
    block = b""
    for name, colon, value in lines:
        if name.lower() not in FRAMING:
            block += name + colon + value + draw(EOL)
    return block if not block or block.endswith(b"\r\n") else block + b"\r\n"


def both(
    start: bytes, block: bytes, parser: type
) -> tuple[ParsedFields | None, list[tuple[bytes, bytes]] | None]:
    """What the pure path and what llhttp alone (no fallback) make of one head's field lines."""
    lines = fast._Lines()
    try:
        parser(lines).feed_data(start + block + b"\r\n")
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return fast._fields(block), None
    return fast._fields(block), lines


@settings(max_examples=500, deadline=None)
@given(field_blocks())
@example(b"A:  x \t\r\n")
@example(b"A: x\r\n y\r\n")
@example(b"A: x\nB: y\r\n")
@example(b"A:\x7f\r\n")
@example(b"A: \xff\x80\r\n")
@example(b"A: a\tb\r\n")
@example(b"A:b:c\r\n")
@example(b": x\r\n")
def test_llhttp_reads_field_lines_as_the_pure_path_does(block: bytes) -> None:
    heads = [
        (b"HTTP/1.1 200 OK\r\n", httptools.HttpResponseParser),
        (b"GET / HTTP/1.1\r\n", httptools.HttpRequestParser),
    ]
    for start, parser in heads:
        pure, llhttp = both(start, block, parser)
        assert (pure is None) == (llhttp is None)  # llhttp takes what may be marked checked
        if pure is not None:
            assert llhttp == list(pure)
            assert pure.checked


FRAMING_LINES = st.lists(
    st.sampled_from(
        [
            b"Content-Length: 5\r\n",
            b"Content-Length: 05\r\n",
            b"Content-Length: 5, 5\r\n",
            b"Content-Length: x\r\n",
            b"Content-Length: 99999999999999999999999\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: gzip, chunked\r\n",
            b"Connection: close\r\n",
            b"Connection: keep-alive, upgrade\r\n",
            b"Upgrade: h2c\r\n",
            b"X-A: 1\r\n",
        ]
    ),
    max_size=4,
)


@pytest.fixture(params=["llhttp", "pure"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(fast, "LLHTTP", request.param == "llhttp")
    yield request.param


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"200 OK", b"404 ", b"503 Busy", b"204 No", b"101 Up", b"200 \x01"]),
    FRAMING_LINES,
    field_blocks(),
    st.binary(max_size=8),
)
def test_split_response_answers_alike_with_either_reader(
    status: bytes, framing: list[bytes], block: bytes, body: bytes
) -> None:
    buf = b"HTTP/1.1 " + status + b"\r\n" + b"".join(framing) + block + b"\r\n" + body
    limits = Http1Limits(max_headers=6)
    answers = []
    for llhttp in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fast, "LLHTTP", llhttp)
            answers.append(fast.split_response(buf, limits))
    assert answers[0] == answers[1]
    if isinstance(answers[1], tuple):
        assert answers[1][2].checked


REQUEST_FRAMING = st.lists(
    st.sampled_from(
        [
            b"Host: a\r\n",
            b"Content-Length: 3\r\n",
            b"Content-Length: 03\r\n",
            b"Content-Length: 1 2\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Expect: 100-continue\r\n",
            b"Upgrade: h2c\r\n",
            b"Connection: Upgrade\r\n",
            b"Connection: close\r\n",
            b"TE: trailers\r\n",
        ]
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"GET / ", b"POST /a?b=c ", b"FOO /x ", b"CONNECT a:1 ", b"GET /{|} "]),
    REQUEST_FRAMING,
    field_blocks(),
    st.binary(max_size=8),
)
def test_split_request_answers_alike_with_either_reader(
    line: bytes, framing: list[bytes], block: bytes, body: bytes
) -> None:
    buf = line + b"HTTP/1.1\r\nHost: h\r\n" + b"".join(framing) + block + b"\r\n" + body
    limits = Http1Limits(max_headers=6, max_body_size=8)
    answers: list[object] = []
    for llhttp in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fast, "LLHTTP", llhttp)
            try:
                answers.append(fast.split_request(buf, limits))
            except HttpProtocolError as exc:
                answers.append((exc.status, str(exc)))
    assert answers[0] == answers[1]
    if isinstance(answers[1], tuple) and len(answers[1]) == 6:
        assert answers[1][2].checked


def test_the_server_codec_reads_a_request_alike_with_either_reader(reader: str) -> None:
    codec = Http1ServerCodec()
    codec.receive_data(b"PUT /a HTTP/1.1\r\nHost: h\r\nX-A:  1 \r\nContent-Length: 2\r\n\r\nhi")
    request = codec.next_request()
    assert isinstance(request, HttpRequest)
    assert (request.method, request.target, request.body) == ("PUT", "/a", b"hi")
    assert list(request.headers) == [(b"host", b"h"), (b"x-a", b"1"), (b"content-length", b"2")]


NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 15:33:42 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 20\r\nConnection: keep-alive\r\n\r\n"
    b"hello from upstream\n"
)


def read(data: bytes) -> tuple[object, ...]:
    codec = Http1ClientCodec()
    codec.encode_request(HttpRequest("GET", "/", [(b"host", b"a")], b""))
    resp = codec.receive_data(data)
    assert resp is not None
    return resp.status, resp.reason, list(resp.headers), resp.body, codec.reusable


def test_the_client_codec_reads_a_response_alike_with_either_reader(reader: str) -> None:
    assert read(NGINX) == (
        200,
        b"OK",
        [
            (b"server", b"nginx/1.22.1"),
            (b"date", b"Thu, 03 Dec 2026 15:33:42 GMT"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"20"),
            (b"connection", b"keep-alive"),
        ],
        b"hello from upstream\n",
        True,
    )


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"Content-Length: 2\r\nContent-Length: 2\r\n", "repeated or invalid Content-Length"),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n", "Content-Length"),
        (b"A: 1\r\n fold\r\nContent-Length: 2\r\n", "obsolete line folding"),
        (b"A: \x01\r\nContent-Length: 2\r\n", "control character"),
    ],
)
def test_a_refused_head_is_refused_alike_with_either_reader(
    reader: str, head: bytes, error: str
) -> None:
    data = b"HTTP/1.1 200 OK\r\n" + head + b"\r\nok"
    assert fast.split_response(data, Http1Limits()) == fast.DEFER
    with pytest.raises(HttpProtocolError, match=error) as caught:
        read(data)
    assert caught.value.status == 502


def test_llhttp_is_on_when_httptools_imports_and_off_with_the_switch() -> None:
    assert httptools.HttpResponseParser is not None
    pure = bool(os.environ.get("SOFAMESH_PURE_PYTHON"))
    assert fast.LLHTTP is not pure
    probe = "from sofamesh.codecs.http1 import fast; print(fast.LLHTTP)"
    env = {**os.environ, "SOFAMESH_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, check=True)
    assert out.stdout.split() == [b"False"]
    env.pop("SOFAMESH_PURE_PYTHON")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, check=True)
    assert out.stdout.split() == [b"True"]
