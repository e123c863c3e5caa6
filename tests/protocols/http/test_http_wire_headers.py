"""A request's fields reach the chain undecoded, and go upstream as they came unless changed.

`request_to_invocation` picks the service, caller and deadline from the wire fields;
`inv.headers` decodes them only when something reads them. Whichever way a request
goes, the invocation and the upstream request are those the decoded path gives.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sofamesh.codecs.http1 import HttpRequest
from sofamesh.model import Headers
from sofamesh.protocols.http.mapping import (
    WireHeaders,
    invocation_to_request,
    parse_timeout_ms,
    request_to_invocation,
    service_of,
)

NAMES = st.sampled_from(
    [b"host", b"x-sofamesh-service", b"x-sofamesh-caller", b"x-sofamesh-timeout-ms",
     b"connection", b"content-length", b"keep-alive", b"accept", b"x-trace", b"te"]
)  # fmt: skip
VALUES = st.sampled_from([b"", b"svc", b"svc:8080", b"[::1]:80", b"12", b"caller", b"\xe9t\xe9"])
FIELDS = st.lists(st.tuples(NAMES, VALUES), max_size=8)


def _request(fields: list[tuple[bytes, bytes]]) -> HttpRequest:
    return HttpRequest("GET", "/a/b?c=1", fields, b"")


def _decoded(fields: list[tuple[bytes, bytes]]) -> Headers:
    return Headers.from_lower([(k.decode("latin-1"), v.decode("latin-1")) for k, v in fields])


@given(FIELDS)
def test_picked_names_are_those_the_decoded_headers_give(fields: list[tuple[bytes, bytes]]) -> None:
    inv = request_to_invocation(_request(fields))
    decoded = _decoded(fields)
    assert isinstance(inv.headers, WireHeaders) and inv.headers.wire is fields
    assert inv.service == service_of(decoded)
    assert inv.caller == (decoded.get("x-sofamesh-caller") or "")
    assert parse_timeout_ms(inv.headers) == parse_timeout_ms(decoded)
    assert inv.headers.wire is fields  # the look-ups above decoded nothing
    assert inv.headers == decoded  # reading them decodes them, to the same headers
    assert inv.headers.wire is None


@given(FIELDS, st.booleans())
def test_upstream_request_is_the_same_decoded_or_not(
    fields: list[tuple[bytes, bytes]], decode: bool
) -> None:
    wire = request_to_invocation(_request(fields))
    wire.caller, wire.deadline = "me", 10.5
    reference = request_to_invocation(_request(fields))
    reference.caller, reference.deadline = "me", 10.5
    reference.headers.items()  # decoded: the path every changed request takes
    if decode:
        wire.headers.get("accept")
    assert invocation_to_request(wire, 10.0) == invocation_to_request(reference, 10.0)


def test_hop_by_hop_and_mesh_fields_are_replaced_on_the_wire_path() -> None:
    fields = [
        (b"host", b"svc"),
        (b"connection", b"keep-alive"),
        (b"x-sofamesh-caller", b"forged"),
        (b"accept", b"*/*"),
        (b"x-sofamesh-timeout-ms", b"999999"),
    ]
    inv = request_to_invocation(_request(fields))
    inv.caller, inv.deadline = "me", 2.0
    out = invocation_to_request(inv, 1.5)
    assert inv.headers.wire is not None
    assert out.headers == [
        (b"host", b"svc"),
        (b"accept", b"*/*"),
        (b"x-sofamesh-service", b"svc"),
        (b"x-sofamesh-caller", b"me"),
        (b"x-sofamesh-timeout-ms", b"500"),
    ]


def test_a_changed_header_goes_upstream() -> None:
    inv = request_to_invocation(_request([(b"host", b"svc"), (b"accept", b"*/*")]))
    inv.headers.set("x-route", "blue")
    inv.headers.remove("accept")
    out = invocation_to_request(inv, 0.0)
    assert out.headers == [
        (b"host", b"svc"),
        (b"x-route", b"blue"),
        (b"x-sofamesh-service", b"svc"),
    ]
