"""HPACK of the lean codec against the `hpack` library, both ways, with table size changes."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.h2.compression import (
    CompressionError,
    HeaderDecoder,
    HeaderEncoder,
    HeaderListTooLarge,
)

names = st.sampled_from([b":path", b"content-type", b"x-a", b"authorization", b"user-agent"])
fields = st.lists(st.tuples(names, st.binary(max_size=300)), max_size=8)
blocks = st.lists(st.tuples(fields, st.sampled_from([None, 0, 100, 4096, 8000])), max_size=12)


@settings(max_examples=200, deadline=None)
@given(blocks)
def test_our_encoder_decodes_with_hpack(
    script: list[tuple[list[tuple[bytes, bytes]], int | None]],
) -> None:
    ours, theirs = HeaderEncoder(), hpack.Decoder()
    theirs.max_header_list_size = 2**20
    for headers, table_size in script:
        if table_size is not None:
            ours.set_max_table_size(table_size)  # the peer's SETTINGS_HEADER_TABLE_SIZE
            theirs.max_allowed_table_size = table_size
        assert theirs.decode(ours.encode(headers), raw=True) == headers


@settings(max_examples=200, deadline=None)
@given(blocks)
def test_hpack_encoder_decodes_with_ours(
    script: list[tuple[list[tuple[bytes, bytes]], int | None]],
) -> None:
    theirs, ours = hpack.Encoder(), HeaderDecoder(max_header_list_size=2**20)
    for headers, table_size in script:
        if table_size is not None and table_size <= 4096:
            theirs.header_table_size = table_size  # a size update starts the next block
        assert ours.decode(theirs.encode(headers)) == headers


def test_an_hpack_bomb_stops_at_the_header_list_size() -> None:
    enc = hpack.Encoder()
    first = enc.encode([(b"x-big", b"v" * 4000)])
    again = enc.encode([(b"x-big", b"v" * 4000)] * 100)  # 100 one-octet references
    assert len(again) == 100
    dec = HeaderDecoder(max_header_list_size=64 * 1024)
    dec.decode(first)
    with pytest.raises(HeaderListTooLarge):
        dec.decode(again)


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",
        b"\xbe",
        b"\x40\x05ab",
        b"\x3f\xe2\x1f",
        b"\x82\x3f\xe1\x1f",
        b"\xff\xff\xff\xff\xff\xff",
    ],
    ids=[
        "index 0",
        "past the table",
        "string past the end",
        "table above 4096",
        "late update",
        "huge",
    ],
)
def test_invalid_blocks_are_compression_errors(block: bytes) -> None:
    with pytest.raises(CompressionError):
        HeaderDecoder(max_header_list_size=65536).decode(block)


def test_a_size_update_bounds_the_entries_added_after_it() -> None:
    """RFC 7541 §4.2, §4.4: after the peer shrank the table to 100 octets, an entry of 200
    empties it rather than joining it, so the peer's indexes keep naming what the peer kept."""
    theirs, ours = hpack.Encoder(), HeaderDecoder(max_header_list_size=2**20)
    theirs.header_table_size = 100
    small, big = (b"x-a", b"1"), (b"x-b", b"v" * 165)
    for headers in ([small], [big], [(b"x-c", b"2"), small], [small, big]):
        assert ours.decode(theirs.encode(headers)) == headers
    with pytest.raises(CompressionError):
        ours.decode(b"\xbe")  # index 62: `big` emptied the table again
