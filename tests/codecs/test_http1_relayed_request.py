"""A plain request relayed as bytes (`relayed_request.py`) reads and goes upstream as
parsing and writing it again would, but for the spelling of the lines it keeps.

Every generated request goes through the server codec twice, with the relay and with it
turned off (the fast path's fields and the writer's usual way): both must accept or refuse
alike, leave the connection alike, give the chain the same invocation, and send upstream
the same bytes once each field line's name is lowercased and its OWS trimmed.
"""

from __future__ import annotations

import pytest
from http1_field_strategies import CONNECTION, NAME, OWS, VALUE
from http1_llhttp import needs_llhttp
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1 import Http1Limits, Http1ServerCodec, HttpRequest, writer
from sofamesh.codecs.http1 import server as server_module
from sofamesh.codecs.http1.errors import HttpProtocolError
from sofamesh.codecs.http1.relayed_request import RelayedRequest
from sofamesh.protocols.http.mapping import (
    invocation_to_request,
    parse_timeout_ms,
    request_to_invocation,
)

# The relay checks with llhttp: with `SOFAMESH_PURE_PYTHON=1` nothing is relayed, which the
# differential test checks too (both runs then take the same way).

SPECIAL = st.sampled_from(
    ["Host", "HOST", "Keep-Alive", "Proxy-Authorization", "proxy-connection", "Trailer", "TE",
     "Upgrade", "Expect", "Transfer-Encoding", "Connection", "CONNECTION", "X-Sofamesh-Service",
     "x-sofamesh-caller", "X-SOFAMESH-TIMEOUT-MS", "x-sofamesh-caller-id", "Hosts", "Con", "Tex"]
)  # fmt: skip
TARGETS = st.one_of(
    st.sampled_from(["/", "/a/b?c=1"]),
    st.sampled_from(["/a/../b", "//x", "*", "http://h/x", "/%41", "/a b"]),
)
METHODS = st.one_of(
    st.sampled_from(["GET", "POST"]),
    st.sampled_from(["HEAD", "PUT", "CONNECT", "OPTIONS", "get", "XY"]),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method, target = draw(METHODS), draw(TARGETS)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    body = draw(st.binary(max_size=12))
    lines = [f"{method} {target} {version}"]
    if draw(st.integers(0, 4)):
        lines.append(f"Host:{draw(OWS)}{draw(st.sampled_from(['svc', 'svc:80', '[::1]:8']))}")
    for name in draw(st.lists(st.one_of(NAME, SPECIAL), max_size=6)):
        value = draw(CONNECTION) if name.lower() == "connection" else draw(VALUE)
        lines.append(f"{name}:{draw(OWS)}{value}{draw(OWS) if value else ''}")
    framing = draw(
        st.one_of(
            st.sampled_from(["none", "exact"]),
            st.sampled_from(["twice", "long", "chunked", "plus"]),
        )
    )
    length = {"long": f"{len(body):019d}", "plus": f"+{len(body)}"}.get(framing, str(len(body)))
    spelling = draw(st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]))
    if framing in ("exact", "twice", "long", "plus"):
        lines.insert(draw(st.integers(1, len(lines))), f"{spelling}:{draw(OWS)}{length}")
    if framing == "twice":
        lines.append(f"Content-Length: {len(body)}")
    if framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    if framing == "none":
        body = b""
    extra = draw(st.sampled_from([b"", b"", b"", b"x", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]))
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body + extra


def receive(data: bytes, relay: bool) -> tuple[object, object]:
    """What the codec makes of `data` (a request, or the refusal's status), and the state
    of the connection after it."""
    codec = Http1ServerCodec(Http1Limits(max_body_size=64))
    with pytest.MonkeyPatch.context() as patch:
        if not relay:
            patch.setattr(server_module.relayed_request, "split_request", lambda *_: None)
        try:
            codec.receive_data(data)
            got: object = codec.next_request()
            if got is None:
                codec.receive_data(b"")
                got = codec.next_request()
        except HttpProtocolError as exc:
            return exc.status, None
    return got, (codec.must_close, codec.unanswered, codec.phase, codec._pending)


def normalised(data: bytes) -> bytes:
    """`data` with each field line's name lowercased and its OWS trimmed."""
    head, sep, body = data.partition(b"\r\n\r\n")
    line, *fields = head.split(b"\r\n")
    out = [line]
    for field in fields:
        name, _, value = field.partition(b":")
        out.append(name.lower() + b": " + value.strip(b" \t"))
    return b"\r\n".join(out) + sep + body


def upstream(request: HttpRequest, read: bool) -> tuple[object, ...]:
    """The invocation's picks and the bytes sent upstream for `request`."""
    inv = request_to_invocation(request)
    picks = (inv.service, inv.caller, parse_timeout_ms(inv.headers), inv.method)
    inv.caller, inv.deadline = "me", 20.25
    if read:
        inv.headers.get("accept")  # a rule reading a header decodes them: the usual way
    data = writer.encode_request(invocation_to_request(inv, 10.0), host=b"up:80")
    return picks, normalised(data[0]), data[1]


@settings(max_examples=600, deadline=None)
@given(requests(), st.booleans())
@example(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", False)
@example(b"POST /a HTTP/1.1\r\nx: 1\r\nContent-Length: 1\r\nHOST:a\r\n\r\nb", False)
def test_relayed_requests_read_and_go_upstream_as_parsed_ones(data: bytes, read: bool) -> None:
    relayed, state = receive(data, relay=True)
    parsed, parsed_state = receive(data, relay=False)
    assert relayed == parsed and state == parsed_state
    if isinstance(relayed, HttpRequest) and isinstance(parsed, HttpRequest):
        relayed, _ = receive(data, relay=True)  # unread again (`==` read its fields)
        assert isinstance(relayed, HttpRequest) and isinstance(parsed, HttpRequest)
        assert upstream(relayed, read) == upstream(parsed, read)


@needs_llhttp
def test_a_plain_request_is_relayed_and_its_fields_parsed_only_when_read() -> None:
    data = b"GET /x?y HTTP/1.1\r\nHost:  svc \r\nAccept: */*\r\nKeep-Alive: 5\r\n\r\n"
    request, _ = receive(data, relay=True)
    assert type(request) is RelayedRequest and request.picked == (b"svc", None, None, None)
    assert request.kept == b"Host:  svc \r\nAccept: */*\r\n"
    inv = request_to_invocation(request)
    inv.caller = "me"
    out = invocation_to_request(inv, 0.0)
    assert request.picked is not None  # nothing parsed its fields on the way
    assert writer.encode_request(out, host=b"up")[0] == (
        b"GET /x?y HTTP/1.1\r\nHost:  svc \r\nAccept: */*\r\n"
        b"x-sofamesh-service: svc\r\nx-sofamesh-caller: me\r\n\r\n"
    )
    assert out.headers == [
        (b"host", b"svc"),
        (b"accept", b"*/*"),
        (b"x-sofamesh-service", b"svc"),
        (b"x-sofamesh-caller", b"me"),
    ]
    assert inv.headers.get("keep-alive") == "5"  # a rule sees every field the caller sent


@needs_llhttp
def test_a_changed_request_line_or_read_fields_take_the_usual_way() -> None:
    data = b"POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 2\r\n\r\nhi"
    for change in ("target", "fields"):
        request, _ = receive(data, relay=True)
        assert type(request) is RelayedRequest
        inv = request_to_invocation(request)
        if change == "target":
            request.target = "/b"
        else:
            request.headers.append((b"x-added", b"1"))
        out = invocation_to_request(inv, 0.0)
        assert type(out) is HttpRequest
        sent = writer.encode_request(out, host=None)[0]
        assert sent.startswith(b"POST /b " if change == "target" else b"POST /a ")
        assert (b"x-added: 1\r\n" in sent) is (change == "fields")
        assert sent.endswith(b"content-length: 2\r\n\r\nhi")


@needs_llhttp
def test_pipelined_requests_are_each_checked_on_the_kept_parser() -> None:
    one = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
    bad = b"GET /2 HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n"
    codec = Http1ServerCodec()
    codec.receive_data(one + one + bad)
    first, second = codec.next_request(), codec.next_request()
    assert type(first) is RelayedRequest and type(second) is RelayedRequest
    assert (first.target, second.target) == ("/1", "/1")
    with pytest.raises(HttpProtocolError) as refused:
        codec.next_request()  # llhttp refuses it, the fast path defers, h11 answers 400
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\tmore\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\n0123456789",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
    ],
)
def test_ambiguous_requests_are_refused_as_before(data: bytes) -> None:
    relayed, _ = receive(data, relay=True)
    parsed, _ = receive(data, relay=False)
    assert relayed == parsed == 400
