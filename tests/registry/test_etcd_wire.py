"""The etcd JSON gateway codec: golden replies from etcd 3.4, property round trips."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.registry.base import RegistryError
from sofamesh.registry.etcd_wire import (
    EtcdError,
    EventType,
    LineSplitter,
    error_from_body,
    parse_range,
    parse_watch_message,
    prefix_end,
    put_request,
    unb64,
    watch_create_request,
)


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


# Recorded from etcd 3.4.23's gateway (curl -N -X POST .../v3/watch), see the module docstring.
WATCH_LINES = [
    b'{"result":{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952",'
    b'"revision":"2","raft_term":"2"},"created":true}}',
    b'{"result":{"header":{"revision":"2"},"events":[{"kv":{"key":"Zm9v","create_revision":"2",'
    b'"mod_revision":"2","version":"1","value":"YmFy"}}]}}',
    b'{"result":{"header":{"revision":"3"},"events":[{"type":"DELETE","kv":{"key":"Zm9v",'
    b'"mod_revision":"3"}}]}}',
    b'{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"3"}}',
]


def test_golden_watch_replies() -> None:
    created, put, delete, compacted = (parse_watch_message(line) for line in WATCH_LINES)
    assert created.created and created.revision == 2 and not created.events
    (ev,) = put.events
    assert ev.type is EventType.PUT and ev.kv.key == b"foo" and ev.kv.value == b"bar"
    assert ev.kv.mod_revision == 2 and ev.kv.version == 1
    (ev,) = delete.events
    assert ev.type is EventType.DELETE and ev.kv.value == b"" and ev.kv.mod_revision == 3
    assert compacted.canceled and compacted.compact_revision == 3 and compacted.revision == 0


def test_golden_range_reply_with_omitted_zero_fields() -> None:
    reply = json.loads(
        '{"header":{"revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2",'
        '"mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}'
    )
    revision, (kv,) = parse_range(reply)
    assert revision == 2 and kv.key == b"foo" and kv.lease == 0
    assert parse_range({"header": {"revision": "7"}}) == (7, [])


def test_stream_error_and_unary_error() -> None:
    with pytest.raises(EtcdError) as info:
        parse_watch_message(b'{"error":{"grpc_code":14,"message":"no leader","code":14}}')
    assert info.value.code == 14
    err = error_from_body({"error": "etcdserver: requested lease not found", "code": 5})
    assert err.code == 5 and "lease not found" in err.message


@pytest.mark.parametrize(
    "line",
    [
        b"nope",
        b"[]",
        b'{"result":1}',
        b'{"result":{"events":[1]}}',
        b'{"result":{"header":{"revision":"x"}}}',
        b'{"result":{"events":[{"type":"BOOM","kv":{"key":""}}]}}',
        b'{"result":{"events":[{"kv":{"key":"%%%"}}]}}',
    ],
)
def test_malformed_watch_lines_are_registry_errors(line: bytes) -> None:
    with pytest.raises(RegistryError):
        parse_watch_message(line)


def test_prefix_end_matches_clientv3() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


@given(st.binary(min_size=1, max_size=12), st.binary(max_size=12))
def test_prefix_end_bounds_exactly_the_prefixed_keys(prefix: bytes, tail: bytes) -> None:
    end = prefix_end(prefix)
    key = prefix + tail
    assert key >= prefix and (end == b"\0" or key < end)


@given(st.binary(min_size=1, max_size=12), st.binary(max_size=12))
def test_keys_outside_the_prefix_are_outside_the_range(prefix: bytes, other: bytes) -> None:
    end = prefix_end(prefix)
    if not other.startswith(prefix) and end != b"\0":
        assert other < prefix or other >= end


@given(st.binary(max_size=40), st.binary(max_size=40), st.integers(0, 2**63 - 1))
def test_put_request_round_trips_bytes_and_64_bit_lease(
    key: bytes,
    value: bytes,
    lease: int,
) -> None:
    body = json.loads(json.dumps(put_request(key, value, lease)))
    assert unb64(body["key"]) == key and unb64(body["value"]) == value
    assert int(body.get("lease", 0)) == lease


def test_watch_create_request_covers_the_prefix() -> None:
    req = watch_create_request(b"/p/", 42)["create_request"]
    assert req == {"key": b64(b"/p/"), "range_end": b64(b"/p0"), "start_revision": "42"}


@settings(max_examples=60)
@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    st.lists(st.integers(1, 17), min_size=1, max_size=10),
)
def test_line_splitter_is_independent_of_chunking(lines: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    splitter, out, i, k = LineSplitter(), [], 0, 0
    while i < len(data):
        step = cuts[k % len(cuts)]
        out += splitter.feed(data[i : i + step])
        i, k = i + step, k + 1
    assert out == [line for line in lines if line.strip()]
    assert splitter.pending == 0


def test_line_splitter_refuses_an_endless_line() -> None:
    splitter = LineSplitter(max_line=10)
    splitter.feed(b"0123456789")
    with pytest.raises(RegistryError):
        splitter.feed(b"x")
    with pytest.raises(RegistryError):
        LineSplitter(max_line=4).feed(b"12345\n")
