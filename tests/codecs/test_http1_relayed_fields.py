"""One field of a relayed message, read without parsing its head (`relayed.first_value`,
`carries_any`): what an access log or a trace check reads of a call.

Every generated head goes through the relay's split twice: one copy is parsed whole
(`headers`), the other is asked for single fields. Each answer must be the value parsing
lists first (None where it lists none), and the asked copy must stay unparsed, so it still
goes out as the bytes it came as. The mapping's `WireHeaders` must answer `get` and
`carries_any` as the decoded `Headers` would, for any name a caller may pass.
"""

from __future__ import annotations

from http1_field_strategies import NAME, OWS, VALUE
from http1_llhttp import needs_llhttp
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1 import Http1Limits
from sofamesh.codecs.http1.messages import PROXY_DROP, HeaderList, headers_to_neutral
from sofamesh.codecs.http1.relayed import RelayedResponse, ResponseCheck, split_response
from sofamesh.codecs.http1.relayed_request import RelayedRequest, RequestCheck, split_request
from sofamesh.protocols.http.mapping import WireHeaders, request_to_invocation

# Names an access log or a trace check asks for, in the spellings a peer may send them,
# and near-misses: a prefix, a longer name, one that appears only inside a value.
KNOWN = ["User-Agent", "user-agent", "X-Request-Id", "TRACEPARENT", "b3", "B3", "b3multi",
         "X-B3-TraceId", "sofa-traceid", "Server", "x-envoy-upstream-service-time", "Keep-Alive",
         "Connection", "content-length"]  # fmt: skip
FIELD_NAMES = st.one_of(NAME, st.sampled_from(KNOWN))
TRACE_NAMES = frozenset({"traceparent", "b3", "x-b3-traceid", "sofa-traceid"})
# What a caller may pass to `Headers.get`: lowercase names, and names no field can have.
ASKED = st.one_of(
    st.sampled_from([k.lower() for k in KNOWN] + ["b", "agent", "user-agent:", "a:b", ""]),
    NAME.map(str.lower),
    st.sampled_from(["User-Agent", "é", "Ā", "x y", "x\r\ny"]),
)


def _lines(draw: st.DrawFn) -> list[str]:
    lines = []
    for name in draw(st.lists(FIELD_NAMES, max_size=6)):
        value = draw(st.one_of(VALUE, st.sampled_from(["b3: x", "x user-agent: y", "a:b"])))
        lines.append(f"{name}:{draw(OWS)}{value}{draw(OWS) if value else ''}")
    return lines


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    lines = ["GET /a HTTP/1.1", f"Host: {draw(st.sampled_from(['svc', 'b3:80']))}", *_lines(draw)]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=4))
    lines = ["HTTP/1.1 200 OK", *_lines(draw), f"Content-Length: {len(body)}"]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def _first(fields: HeaderList, name: bytes) -> bytes | None:
    return next((v for k, v in fields if k == name), None)


def _request(raw: bytes) -> RelayedRequest | None:
    got = split_request(raw, Http1Limits(), RequestCheck())
    return None if got is None else got[0]


@needs_llhttp
@settings(max_examples=300, deadline=None)
@given(requests(), st.lists(ASKED, min_size=1, max_size=6))
@example(b"GET /a HTTP/1.1\r\nHost: svc\r\nX-Note: user-agent: no\r\nUser-Agent:  curl \r\n\r\n",
         ["user-agent", "x-note"])  # fmt: skip
def test_a_field_of_a_relayed_request_reads_as_parsing_gives_it(
    raw: bytes, asked: list[str]
) -> None:
    asked_copy, parsed_copy = _request(raw), _request(raw)
    if asked_copy is None or parsed_copy is None:
        return  # not relayed: nothing here to read unparsed
    parsed = parsed_copy.headers
    decoded = headers_to_neutral(parsed)
    wire = request_to_invocation(asked_copy).headers
    assert type(wire) is WireHeaders
    for name in asked:
        if name.isascii() and ":" not in name:
            assert asked_copy.header(name.encode()) == _first(parsed, name.encode())
        assert wire.get(name) == decoded.get(name)
        assert wire.get(name, "-") == decoded.get(name, "-")
    assert wire.carries_any(TRACE_NAMES) == decoded.carries_any(TRACE_NAMES)
    assert wire.carries_any(frozenset(asked)) == decoded.carries_any(frozenset(asked))
    if all(name.isascii() and ":" not in name for name in asked):  # else decoded to answer
        assert wire.request is asked_copy and asked_copy.picked is not None  # still unparsed
    assert asked_copy.headers == parsed  # and parsing it now gives what the other copy gave


@needs_llhttp
@settings(max_examples=300, deadline=None)
@given(responses(), st.lists(ASKED, min_size=1, max_size=6), st.booleans())
def test_a_field_of_a_relayed_response_reads_as_parsing_gives_it(
    raw: bytes, asked: list[str], forwarded: bool
) -> None:
    def split() -> RelayedResponse | None:
        got = split_response(raw, Http1Limits(), ResponseCheck())
        if got is not None and forwarded:
            assert got[0].forward()  # the proxy strips the hop-by-hop fields
        return None if got is None else got[0]

    asked_copy, parsed_copy = split(), split()
    if asked_copy is None or parsed_copy is None:
        return
    parsed = parsed_copy.headers
    for name in asked:
        if name.isascii() and ":" not in name:
            assert asked_copy.header(name.encode()) == _first(parsed, name.encode())
    # Still unparsed: forwarded, it goes out as the lines it came as.
    assert (asked_copy.relay is not None) == forwarded
    assert asked_copy.headers == parsed
    if forwarded:
        assert not any(k in PROXY_DROP for k, _ in parsed)
