"""Remembered header-block verdicts (`HeaderDecoder.decode_judged`) against h2, the reference.

The lean codec reuses the decoded, checked fields of a byte-identical header
block that changed nothing in the HPACK table. Hypothesis writes header blocks
representation by representation (static and dynamic references, literals
with and without indexing, never-indexed ones, table size updates, names the
request rules refuse) and sends a few of them, repeated in any order, each on
a stream of its own: the lean codec must answer every such conversation as h2
does (`judge`), whatever it remembered from the blocks before.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sofamesh.codecs.h2 import PREFACE, HeadersReceived, LeanH2Codec, ReferenceH2Codec
from sofamesh.codecs.h2.compression import HeaderDecoder
from sofamesh.codecs.h2.differential import judge
from sofamesh.codecs.h2.hpack_encoder import encode_integer
from sofamesh.codecs.h2.malformed import malformed_request

Codec = LeanH2Codec | ReferenceH2Codec
END_STREAM, END_HEADERS = 0x1, 0x4
# :method GET, :scheme http, :path /, :authority (literal value): a request's usual start.
START = bytes([0x82, 0x86, 0x84]) + b"\x01\x01h"  # the last one not indexed

# Static name indexes: :authority, :method, :path, :scheme, :status, content-length,
# content-type, user-agent.
static_name = st.sampled_from([1, 2, 4, 6, 8, 28, 31, 58])
literal_name = st.sampled_from(
    [b":method", b":path", b":authority", b":status", b"x-a", b"X-Up", b"connection", b"te"]
)
value = st.one_of(
    st.sampled_from([b"1", b"2", b"", b"0", b"5", b"GET", b"/", b"trailers", b"1S"]),
    st.binary(max_size=12).map(lambda b: bytes(c % 94 + 33 for c in b)),
)
# 0x40: literal with incremental indexing (changes the table); 0x00: without; 0x10: never.
literal_kind = st.sampled_from([(0x40, 6), (0x00, 4), (0x10, 4)])
representation = st.one_of(
    st.tuples(st.just("indexed"), st.integers(1, 61)),  # the static table
    st.tuples(st.just("indexed"), st.integers(62, 64)),  # the dynamic table, or past it
    st.tuples(st.just("literal"), literal_kind, st.one_of(static_name, literal_name), value),
    st.tuples(st.just("size"), st.sampled_from([0, 50, 4096, 5000])),
)
block = st.tuples(st.booleans(), st.lists(representation, max_size=5)).map(
    lambda b: (START if b[0] else b"") + b"".join(_encoded(r) for r in b[1])
)


def _string(data: bytes) -> bytes:
    return encode_integer(len(data), 7, 0x00) + data


def _encoded(rep: tuple[Any, ...]) -> bytes:
    """One HPACK representation (RFC 7541 §6), never Huffman-coded."""
    if rep[0] == "indexed":
        return encode_integer(rep[1], 7, 0x80)
    if rep[0] == "size":
        return encode_integer(rep[1], 5, 0x20)
    (first, prefix), name, val = rep[1], rep[2], rep[3]
    if isinstance(name, int):
        return encode_integer(name, prefix, first) + _string(val)
    return encode_integer(0, prefix, first) + _string(name) + _string(val)


def _headers_frame(stream_id: int, payload: bytes, end_stream: bool) -> bytes:
    flags = END_HEADERS | (END_STREAM if end_stream else 0)
    head = struct.pack(">I", len(payload))[1:] + bytes([0x1, flags])
    return head + struct.pack(">I", stream_id) + payload


INSERT_1 = START + encode_integer(0, 6, 0x40) + _string(b"x-a") + _string(b"1")
INSERT_2 = START + encode_integer(0, 6, 0x40) + _string(b"x-a") + _string(b"2")


def server(kind: str) -> Codec:
    s = (LeanH2Codec if kind == "lean" else ReferenceH2Codec)(client_side=False)
    s.initiate()
    return s


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(block, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=8),
)
@example(  # a block read the table; the table changed; the same bytes mean something else
    [INSERT_1, START + encode_integer(62, 7, 0x80), INSERT_2],
    [(0, True), (1, True), (2, True), (1, True)],
)
@example(  # a block that inserted, sent again: its insertion must happen again
    [INSERT_1, INSERT_2, START + encode_integer(62, 7, 0x80)],
    [(0, True), (1, True), (0, True), (2, True)],
)
def test_repeated_blocks_get_the_verdicts_h2_gives(blocks: list[bytes], sends: list[Any]) -> None:
    """Each send is HEADERS on a new stream with one of `blocks`, repeats likely."""
    wire = PREFACE + bytes(3) + b"\x04\x00" + bytes(4)  # the client's empty SETTINGS
    for i, (pick, end) in enumerate(sends):
        wire += _headers_frame(2 * i + 1, blocks[pick % len(blocks)], end)
    judge(server, wire)


def _counted() -> tuple[list[int], Any]:
    calls: list[int] = []

    def rule(fields: list[tuple[bytes, bytes]]) -> tuple[str, int | None]:
        calls.append(1)
        return malformed_request(fields)

    return calls, rule


def test_a_block_that_changed_nothing_is_decoded_and_judged_once() -> None:
    decoder = HeaderDecoder(16_384)
    calls, rule = _counted()
    plain = START + encode_integer(0, 4, 0x00) + _string(b"x-a") + _string(b"1")
    first = decoder.decode_judged(plain, rule)
    again = decoder.decode_judged(plain, rule)
    assert first == again and len(calls) == 1
    assert again[0] is not first[0]  # a list of its own: the application may change it
    assert decoder.decode_judged(plain, malformed_request) == first  # another rule: judged


def test_a_block_that_indexes_or_resizes_is_judged_every_time() -> None:
    decoder = HeaderDecoder(16_384)
    for changing in (
        START + encode_integer(0, 6, 0x40) + _string(b"x-a") + _string(b"1"),
        encode_integer(4096, 5, 0x20) + START,
    ):
        calls, rule = _counted()
        decoder.decode_judged(changing, rule)
        decoder.decode_judged(changing, rule)
        assert len(calls) == 2


def test_a_block_that_read_the_table_is_judged_again_once_the_table_changed() -> None:
    decoder = HeaderDecoder(16_384)
    decoder.decode(encode_integer(0, 6, 0x40) + _string(b"x-a") + _string(b"1"))
    reads = START + encode_integer(62, 7, 0x80)  # x-a: 1, from the dynamic table
    calls, rule = _counted()
    decoder.decode_judged(reads, rule)
    assert decoder.decode_judged(reads, rule)[0][-1] == (b"x-a", b"1")
    assert len(calls) == 1
    decoder.decode(encode_integer(0, 6, 0x40) + _string(b"x-a") + _string(b"2"))
    assert decoder.decode_judged(reads, rule)[0][-1] == (b"x-a", b"2")
    assert len(calls) == 2


def test_the_codec_reports_a_remembered_request_as_the_first() -> None:
    lean = server("lean")
    wire = PREFACE + bytes(3) + b"\x04\x00" + bytes(4)
    wire += _headers_frame(1, START, True) + _headers_frame(3, START, True)
    events = [e for e in lean.receive_data(wire) if isinstance(e, HeadersReceived)]
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"h")]
    assert events == [HeadersReceived(1, fields, True), HeadersReceived(3, fields, True)]
    assert events[0].headers is not events[1].headers


def test_a_closed_connections_decoder_is_not_kept_alive_by_its_remembered_blocks() -> None:
    decoder = HeaderDecoder(16_384)
    calls, rule = _counted()
    plain = START + encode_integer(0, 4, 0x00) + _string(b"x-gone") + _string(b"1")
    held = sys.getrefcount(decoder)
    decoder.decode_judged(plain, rule)
    decoder.decode_judged(plain, rule)
    assert len(calls) == 1  # remembered,
    assert sys.getrefcount(decoder) == held  # yet nothing more holds the decoder
    fresh = HeaderDecoder(16_384)  # another connection's decoder: its own verdicts
    fresh.decode_judged(plain, rule)
    assert len(calls) == 2
