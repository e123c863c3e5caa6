"""A plain message's fields go on as the parser checked them (`ParsedFields.checked`).

The writer skips its checks for them, so what it writes must be exactly what its checked
path writes for the same fields, for every head both accept; any change to the fields
must clear the mark; and the heads a proxy must refuse are still refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1 import Http1ClientCodec, Http1ServerCodec, HttpRequest, HttpResponse
from sofamesh.codecs.http1.errors import HttpProtocolError
from sofamesh.codecs.http1.messages import ParsedFields, checked
from sofamesh.codecs.http1.writer import encode_request, encode_response
from sofamesh.protocols.http.mapping import (
    HOP_BY_HOP,
    invocation_to_request,
    request_to_invocation,
    response_to_result,
    result_to_response,
)

NAME = st.text(alphabet="abcdefgXYZ019-_.!~*'|`^#$%&+", min_size=1, max_size=10)
VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=16,
).map(lambda v: v.strip(" "))
# Fields a proxy treats apart: hop-by-hop ones, the mesh's, framing.
SPECIAL = st.sampled_from(
    ["Keep-Alive", "Proxy-Authorization", "X-Sofamesh-Service", "x-sofamesh-caller", "Trailer",
     "Connection", "Content-Length"]
)  # fmt: skip
OWS = st.sampled_from(["", " ", "  ", "\t", " \t"])


@st.composite
def fields(draw: st.DrawFn) -> list[str]:
    names = draw(st.lists(st.one_of(NAME, SPECIAL), max_size=6))
    out = []
    for name in names:
        low = name.lower()
        if low == "connection":
            value = draw(st.sampled_from(["keep-alive", "close"]))
        elif low == "content-length" or low in ("host", "transfer-encoding", "te", "expect"):
            continue  # framing is the message's own, below
        else:
            value = draw(VALUE)
        out.append(f"{name}:{draw(OWS)}{value}{draw(OWS) if value else ''}")
    return out


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
    target = "/" + draw(st.text(alphabet="abcxyz019/?=&-._~", max_size=12))
    lines = [f"{method} {target} HTTP/1.1", *draw(fields())]
    lines.insert(
        draw(st.integers(1, len(lines))), f"{draw(st.sampled_from(['Host', 'host']))}: svc"
    )
    body = draw(st.binary(max_size=20))
    if body or draw(st.booleans()):
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 201, 404, 500, 503]))
    reason = draw(st.sampled_from(["OK", "", "Not Found"]))
    body = draw(st.binary(max_size=20))
    lines = [f"HTTP/1.1 {status} {reason}", *draw(fields()), f"Content-Length: {len(body)}"]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def read_request(data: bytes) -> HttpRequest:
    codec = Http1ServerCodec()
    codec.receive_data(data)
    req = codec.next_request()
    assert req is not None
    return req


def read_response(data: bytes) -> HttpResponse:
    codec = Http1ClientCodec()
    codec.encode_request(HttpRequest("GET", "/", [(b"host", b"a")]))
    resp = codec.receive_data(data)
    assert resp is not None
    return resp


def general(request: HttpRequest) -> HttpRequest:
    """The same request with its fields as a plain list: the writer's checked path."""
    return HttpRequest(request.method, request.target, list(request.headers), request.body)


@settings(max_examples=300, deadline=None)
@given(requests())
def test_a_parsed_request_head_is_written_as_the_checked_path_writes_it(data: bytes) -> None:
    req = read_request(data)
    assert checked(req.headers)
    for host in (None, b"other:80"):
        assert encode_request(req, host=host) == encode_request(general(req), host=host)


@settings(max_examples=300, deadline=None)
@given(requests(), st.sampled_from(["", "app"]), st.sampled_from([None, 12.5]))
def test_the_request_sent_upstream_is_what_the_writer_writes(
    data: bytes, caller: str, deadline: float | None
) -> None:
    inv = request_to_invocation(read_request(data))
    inv.caller, inv.deadline = caller, deadline
    upstream = invocation_to_request(inv, now=10.0)
    assert checked(upstream.headers)
    assert encode_request(upstream, host=b"h") == encode_request(general(upstream), host=b"h")


@settings(max_examples=300, deadline=None)
@given(responses(), st.booleans())
def test_a_parsed_response_head_is_written_as_the_checked_path_writes_it(
    data: bytes, close: bool
) -> None:
    resp = result_to_response(response_to_result(read_response(data)), "svc")
    assert checked(resp.headers)
    assert not any(k.decode() in HOP_BY_HOP for k, _ in resp.headers)
    plain = HttpResponse(resp.status, list(resp.headers), resp.body, resp.reason)
    assert encode_response(resp, head=False, close=close) == encode_response(
        plain, head=False, close=close
    )


CHANGES: list[Callable[[list[Any]], object]] = [
    lambda f: f.append((b"x", b"y")),
    lambda f: f.extend([(b"x", b"y")]),
    lambda f: f.insert(0, (b"x", b"y")),
    lambda f: f.remove(f[0]),
    lambda f: f.pop(),
    lambda f: f.clear(),
    lambda f: f.sort(),
    lambda f: f.reverse(),
    lambda f: f.__setitem__(0, (b"x", b"y")),
    lambda f: f.__setitem__(slice(None), [(b"x", b"y")]),
    lambda f: f.__delitem__(0),
    lambda f: f.__iadd__([(b"x", b"y")]),
    lambda f: f.__imul__(2),
]


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_to_the_fields_clears_the_mark(change: Callable[[list[Any]], object]) -> None:
    req = read_request(b"GET / HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\n\r\n")
    assert checked(req.headers) and req.headers == [(b"host", b"svc"), (b"accept", b"*/*")]
    change(req.headers)
    assert not checked(req.headers)
    req.headers[:] = [(b"host", b"svc\r\nx-injected: 1")]
    with pytest.raises(ValueError, match="host"):
        encode_request(req, host=None)


def test_a_host_the_writer_adds_is_checked() -> None:
    fields = ParsedFields([(b"accept", b"*/*")])
    fields.checked = True
    with pytest.raises(ValueError):
        encode_request(HttpRequest("GET", "/", fields), host=b"h\r\nx-injected: 1")


def test_a_mesh_value_the_writer_refuses_is_checked() -> None:
    inv = request_to_invocation(read_request(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n"))
    inv.service = "svc\r\nx-injected: 1"  # as a broken rule could set it
    upstream = invocation_to_request(inv, now=0.0)
    assert not checked(upstream.headers)
    with pytest.raises(ValueError, match="x-sofamesh-service"):
        encode_request(upstream, host=None)


SMUGGLING = [
    b"Content-Length: 1\r\nContent-Length: 1\r\n",
    b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
    b"X-A: 1\r\n folded\r\nContent-Length: 1\r\n",
    b"X-A: 1\nContent-Length: 1\r\n",
]


@pytest.mark.parametrize("fields", SMUGGLING)
def test_smuggling_attempts_are_refused(fields: bytes) -> None:
    with pytest.raises(HttpProtocolError) as refused:
        read_request(b"POST / HTTP/1.1\r\nHost: svc\r\n" + fields + b"\r\nx")
    assert refused.value.status == 400
    with pytest.raises(HttpProtocolError) as refused:
        read_response(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\nx")
    assert refused.value.status == 502
