"""The fast read of a request body's names agrees with the full decoder, or steps aside.

`peek_names` runs on every Bolt request a proxy carries; whenever it answers, its
answer must be the full decoder's (`peek_request`), and on anything it does not
understand it must say None rather than guess.
"""

from __future__ import annotations

from bolt_vectors import VECTORS, FrameKind
from hypothesis import given, settings
from hypothesis import strategies as st

import sofamesh.codecs.bolt.names as names_module
from sofamesh.codecs.bolt.names import peek_names
from sofamesh.codecs.bolt.sofarpc import SofaRequest, encode_request, peek_request


def full(body: bytes) -> tuple[str | None, str | None] | None:
    req = peek_request(body)
    return None if req is None else (req.methodName, req.targetServiceUniqueName)


def test_java_and_node_requests_take_the_fast_read() -> None:
    requests = [v for v in VECTORS if v.kind is FrameKind.REQUEST]
    hessian2 = [v for v in requests if full(v.raw[slice(*v.body_span)]) is not None]
    assert len(hessian2) >= 2  # sofa-rpc-node's Hessian 2 requests (frames.txt)
    for v in requests:  # the older dialect (h3) is None for both
        body = v.raw[slice(*v.body_span)]
        assert peek_names(body) == full(body), v.name
    for v in hessian2:
        assert peek_names(v.raw[slice(*v.body_span)]) is not None, v.name  # understood


names = st.none() | st.text(max_size=40)
sigs = st.none() | st.lists(st.sampled_from(["java.lang.String", "int", "[B", "é"]), max_size=3)


@settings(max_examples=300)
@given(names, sigs, names, names, st.none() | st.dictionaries(st.text(max_size=5), st.text()))
def test_encoded_requests_agree_with_the_decoder(
    method: str | None,
    arg_sigs: list[str] | None,
    service: str | None,
    app: str | None,
    props: dict[str, str] | None,
) -> None:
    req = SofaRequest(method, arg_sigs, service, app, props)
    body = encode_request(req, [None] * len(arg_sigs or []))
    fast = peek_names(body)
    if fast is not None:
        assert fast == full(body)
    if all(s is None or s.isascii() for s in (method, service, *(arg_sigs or []))):
        assert fast == (method, service)  # the usual form is never left to the slow path


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_any_bytes_give_an_answer_or_none(body: bytes) -> None:
    fast = peek_names(body)
    if fast is not None:
        assert fast == full(body)


@given(st.data())
def test_a_cut_body_is_not_read_past_its_end(data: st.DataObject) -> None:
    body = encode_request(SofaRequest("echo", ["int"], "com.example.E:1.0", "a", {}), [1])
    cut = body[: data.draw(st.integers(0, len(body) - 1))]
    fast = peek_names(cut)
    assert fast is None or fast == ("echo", "com.example.E:1.0")


def test_repeated_heads_are_answered_from_memory_and_stay_right() -> None:
    def body(service: str, method: str, arg: str) -> bytes:
        return encode_request(SofaRequest(method, ["java.lang.String"], service, None, {}), [arg])

    names_module.forget()
    first = body("com.example.Echo:1.0", "echo", "x")
    assert peek_names(first) == ("echo", "com.example.Echo:1.0")
    assert len(names_module._known) == 1  # the head up to the second name
    assert peek_names(first) == ("echo", "com.example.Echo:1.0")
    assert names_module._last[0] == first[: len(next(iter(names_module._known)))]
    # The same head, other arguments: from memory; another method of the same length and
    # another service are not confused with it.
    assert peek_names(body("com.example.Echo:1.0", "echo", "y" * 500)) == first_names(first)
    assert peek_names(body("com.example.Echo:1.0", "ping", "x")) == ("ping", "com.example.Echo:1.0")
    assert peek_names(body("com.example.Echo:2.0", "echo", "x")) == ("echo", "com.example.Echo:2.0")
    for i in range(3 * names_module._MAX_LENGTHS):  # many lengths: still right, memory bounded
        service = "s" * (i + 1)
        assert peek_names(body(service, "m", "x")) == ("m", service)
    assert len(names_module._lengths) <= names_module._MAX_LENGTHS


def first_names(body: bytes) -> tuple[str | None, str | None] | None:
    return full(body)
