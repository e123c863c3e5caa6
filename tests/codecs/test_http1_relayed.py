"""A plain upstream response relayed as bytes (`relayed.py`) goes out as parsing and writing
it again would send it, but for the spelling of the lines it keeps.

Every generated response goes through the client codec twice, with the relay and with it
turned off (the fast path's fields and the writer's usual way): both must accept or refuse
alike, leave the connection alike, and write the same bytes once each field line's name is
lowercased and its OWS trimmed.
"""

from __future__ import annotations

import re

import pytest
from http1_field_strategies import CONNECTION, NAME, OWS, VALUE
from http1_llhttp import needs_llhttp
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1 import Http1ClientCodec, Http1Limits, HttpRequest, HttpResponse, fast
from sofamesh.codecs.http1 import client as client_module
from sofamesh.codecs.http1.errors import HttpProtocolError
from sofamesh.codecs.http1.relayed import RelayedResponse
from sofamesh.codecs.http1.writer import encode_response
from sofamesh.protocols.http.mapping import response_to_result, result_to_response

# The relay reads with llhttp: with `SOFAMESH_PURE_PYTHON=1` nothing is relayed, which the
# differential test checks too (both runs then take the same way).

SPECIAL = st.sampled_from(
    ["Keep-Alive", "KEEP-ALIVE", "Proxy-Authorization", "proxy-connection", "Trailer", "TE",
     "Upgrade", "Connection", "CONNECTION", "connection", "Content-Type", "Con", "Tex"]
)  # fmt: skip


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500, 503, 101]))
    reason = draw(st.sampled_from(["OK", "", "Not Found", "x\x01"]))
    body = draw(st.binary(max_size=12))
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name in draw(st.lists(st.one_of(NAME, SPECIAL), max_size=6)):
        value = draw(CONNECTION) if name.lower() == "connection" else draw(VALUE)
        lines.append(f"{name}:{draw(OWS)}{value}{draw(OWS) if value else ''}")
    framing = draw(
        st.sampled_from(["exact", "exact", "exact", "twice", "long", "none", "chunked", "plus"])
    )
    length = {"long": f"{len(body):019d}", "plus": f"+{len(body)}"}.get(framing, str(len(body)))
    spelling = draw(st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]))
    if framing != "none" and framing != "chunked":
        lines.insert(draw(st.integers(1, len(lines))), f"{spelling}:{draw(OWS)}{length}")
    if framing == "twice":
        lines.append(f"Content-Length: {len(body)}")
    if framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    extra = draw(st.sampled_from([b"", b"", b"", b"x", b"HTTP/1.1 200 OK\r\n"]))
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body + extra


def receive(data: bytes, relay: bool) -> tuple[object, bool]:
    """What the codec makes of `data` (a response, or the refusal's status), and whether the
    connection is reusable after it."""
    codec = Http1ClientCodec()
    codec.encode_request(HttpRequest("GET", "/", [(b"host", b"a")]))
    with pytest.MonkeyPatch.context() as patch:
        if not relay:
            patch.setattr(client_module.relayed, "split_response", lambda *_: None)
        try:
            got: object = codec.receive_data(data)
            if got is None:
                got = codec.receive_data(b"")
        except HttpProtocolError as exc:
            return exc.status, False
    return got, codec.reusable


def normal(data: bytes) -> bytes:
    """`data` with each field line's name lowercased and its OWS trimmed."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = [re.match(rb"([^:]*):[ \t]*(.*?)[ \t]*$", line, re.S) for line in lines[1:]]
    out = [lines[0], *(m[1].lower() + b": " + m[2] for m in fields if m)]
    return b"\r\n".join(out) + sep + body


@settings(max_examples=600, deadline=None)
@given(responses(), st.booleans())
def test_a_relayed_response_is_written_as_parsing_and_writing_would(
    data: bytes, close: bool
) -> None:
    relayed, reusable = receive(data, relay=True)
    reference, reference_reusable = receive(data, relay=False)
    assert reusable == reference_reusable
    if not isinstance(reference, HttpResponse):
        assert relayed == reference  # the same refusal
        return
    assert isinstance(relayed, HttpResponse)
    out = [
        encode_response(result_to_response(response_to_result(r), "svc"), head=False, close=close)
        for r in (relayed, reference)
    ]
    assert normal(out[0][0]) == out[1][0] and out[0][1] == out[1][1]


NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n"
    b"Connection: keep-alive\r\nX-A: 1\r\n\r\nhello"
)


def forwarded(data: bytes = NGINX) -> RelayedResponse:
    resp, _ = receive(data, relay=True)
    assert isinstance(resp, RelayedResponse)
    return resp


@needs_llhttp
def test_an_unread_response_goes_out_as_its_own_lines_less_the_hop_by_hop_ones() -> None:
    resp = result_to_response(response_to_result(forwarded()), "svc")
    assert isinstance(resp, RelayedResponse) and resp.relay is not None
    assert encode_response(resp, head=False, close=True)[0] == (
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nX-A: 1\r\ncontent-length: 5\r\n"
        b"connection: close\r\n\r\nhello"
    )


@needs_llhttp
def test_fields_read_before_forwarding_are_stripped_and_written_the_usual_way() -> None:
    resp = forwarded()
    assert (b"keep-alive", b"timeout=5") in resp.headers
    out = result_to_response(response_to_result(resp), "svc")
    assert out.relay is None and out.headers == [(b"server", b"nginx"), (b"x-a", b"1")]
    assert encode_response(out, head=False, close=False)[0] == (
        b"HTTP/1.1 200 OK\r\nserver: nginx\r\nx-a: 1\r\ncontent-length: 5\r\n\r\nhello"
    )


@needs_llhttp
def test_fields_read_after_forwarding_lack_the_hop_by_hop_ones() -> None:
    resp = result_to_response(response_to_result(forwarded()), "svc")
    assert resp.headers == [(b"server", b"nginx"), (b"x-a", b"1")]
    assert isinstance(resp, RelayedResponse) and resp.relay is None


@needs_llhttp
def test_fields_set_by_a_filter_are_written_and_checked() -> None:
    resp = result_to_response(response_to_result(forwarded()), "svc")
    resp.headers = [(b"x-b", b"2\r\nx-injected: 1")]
    with pytest.raises(ValueError):
        encode_response(resp, head=False, close=False)


@needs_llhttp
def test_a_relayed_response_equals_the_same_response_parsed() -> None:
    assert forwarded() == receive(NGINX, relay=False)[0]
    assert receive(NGINX, relay=False)[0] == forwarded()


@needs_llhttp
def test_one_parser_reads_a_connections_responses_and_a_refused_one_drops_it() -> None:
    codec = Http1ClientCodec()
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    kinds = []
    for data in (NGINX, NGINX, chunked, NGINX, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"):
        codec.encode_request(HttpRequest("GET", "/", [(b"host", b"a")]))
        resp = codec.receive_data(data)
        if resp is None:
            resp = codec.receive_data(b"lo")
        assert resp is not None and resp.body == b"hello" and codec.reusable
        kinds.append(type(resp) is RelayedResponse)
    assert kinds == [True, True, False, True, False]


def test_a_response_to_head_or_in_pieces_is_not_relayed() -> None:
    assert type(receive(NGINX, relay=True)[0]) is (RelayedResponse if fast.LLHTTP else HttpResponse)
    codec = Http1ClientCodec()
    codec.encode_request(HttpRequest("HEAD", "/", [(b"host", b"a")]))
    resp = codec.receive_data(NGINX[: -len(b"hello")])
    assert resp is not None and type(resp) is HttpResponse


@pytest.mark.parametrize("max_headers", [2, 5, 6])
def test_the_field_count_limit_holds_for_a_relayed_response(max_headers: int) -> None:
    codec = Http1ClientCodec(Http1Limits(max_headers=max_headers))
    codec.encode_request(HttpRequest("GET", "/", [(b"host", b"a")]))
    if max_headers < 5:  # NGINX has five fields
        with pytest.raises(HttpProtocolError, match="header fields"):
            codec.receive_data(NGINX)
    else:
        resp = codec.receive_data(NGINX)
        assert resp is not None and resp.body == b"hello"
