"""The fallback head reader (`sofarpc.peek_request`) is bounded whatever the body holds.

A legal Hessian 2 body may put millions of class definitions before its `SofaRequest`;
the full decoder would read them all on the event loop (seconds of CPU per hop). The
peek reads a bounded prefix under small limits and refuses a Hessian 2 body whose head
does not fit, while the forms peers write still decode and other dialects give None.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.bolt.sofarpc import (
    PEEK_PREFIX,
    HeadUnreadable,
    SofaRequest,
    encode_request,
    peek_request,
)

BOUND = 0.5  # seconds; the peek takes about a millisecond, the full decoder seconds


def class_bomb(definitions: int) -> bytes:
    """`definitions` legal one-field class definitions, then a real request."""
    defs = b"C\x01a\x91\x01b" * definitions
    return defs + encode_request(SofaRequest("echo", [], "com.example.E:1.0", None, {}), [])


def test_a_class_definition_bomb_is_refused_in_milliseconds() -> None:
    body = class_bomb(1_000_000)
    started = time.perf_counter()
    with pytest.raises(HeadUnreadable, match="max_objects=64 classes"):
        peek_request(body)
    assert time.perf_counter() - started < BOUND


def test_a_head_past_the_prefix_is_refused() -> None:
    props = {"rpc_trace_context": {"baggage": "x" * 4000}}
    big = {f"k{i}": "v" * 1000 for i in range(2 * PEEK_PREFIX // 1000)}
    body = encode_request(SofaRequest("echo", [], "com.example.E:1.0", None, big), [])
    with pytest.raises(HeadUnreadable, match="input ends"):
        peek_request(body)
    ok = encode_request(SofaRequest("echo", [], "com.example.E:1.0", None, props), [])
    assert peek_request(ok + b"\x90" * (1 << 20)) is not None  # large arguments are not read


def test_other_dialects_still_pass_as_unknown() -> None:
    assert peek_request(b"O\xc8\x01a\x91\x01bo\x90N") is None  # the Hessian draft: forwarded
    assert peek_request(b"\x0a\x04echo") is None  # protobuf


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_hessian2_body_is_answered_quickly(tail: bytes) -> None:
    started = time.perf_counter()
    try:
        got = peek_request(b"C" + tail)
    except HeadUnreadable:
        got = None
    assert got is None or isinstance(got, SofaRequest)
    assert time.perf_counter() - started < BOUND
