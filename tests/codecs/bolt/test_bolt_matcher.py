"""match(): recognising Bolt from a connection's first bytes."""

from __future__ import annotations

import pytest
from bolt_vectors import VECTORS, Vector
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.bolt import Match, match


@pytest.mark.parametrize("vec", VECTORS, ids=[v.name for v in VECTORS])
def test_captured_frames_match_once_the_command_code_is_in(vec: Vector) -> None:
    decisive = 4 if vec.version == 1 else 5
    for n in range(decisive):
        assert match(vec.raw[:n]) is Match.NEED_MORE, n
    for n in (decisive, decisive + 1, len(vec.raw)):
        assert match(vec.raw[:n]) is Match.YES
    assert match(memoryview(vec.raw)) and match(bytearray(vec.raw[:decisive]))


@pytest.mark.parametrize(
    "prefix",
    [
        b"GET / HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x02\x00",  # TLS ClientHello
        b"\xda\xbb\xc2\x00",  # Dubbo
        b"\x01\x03",  # v1, type 3
        b"\x02\x00",  # v2, ver1 0
        b"\x02\x02\x05",  # v2, type 5
        b"\x01\x01\x01",  # command code high byte set
        b"\x01\x00\x00\x01",  # a response with the request code
        b"\x01\x01\x00\x02",  # a request with the response code
        b"\x02\x01\x02\x00\x03",  # v2 oneway with code 3
    ],
)
def test_other_protocols_and_impossible_headers_do_not_match(prefix: bytes) -> None:
    assert match(prefix) is Match.NO
    assert not match(prefix)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=8))
def test_a_decision_never_changes_as_more_bytes_arrive(data: bytes) -> None:
    results = [match(data[:n]) for n in range(len(data) + 1)]
    decided = [r for r in results if r is not Match.NEED_MORE]
    assert len(set(decided)) <= 1
    if decided:
        first = results.index(decided[0])
        assert all(r is decided[0] for r in results[first:])
