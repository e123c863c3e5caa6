"""HPACK of the lean codec against the `hpack` library, both ways, with table size changes."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sofamesh.codecs.h2.compression import CompressionError, HeaderDecoder, HeaderListTooLarge
from sofamesh.codecs.h2.hpack_encoder import HeaderEncoder

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


# A few blocks, repeated: what a proxied call's connections carry, so the remembered blocks
# are reused (with table insertions in between, evictions and size updates).
repeated = st.lists(
    st.tuples(
        st.sampled_from(
            [
                [(b":status", b"200"), (b"date", b"Mon, 1"), (b"x-a", b"1" * 900)],
                [(b"grpc-status", b"0")],
                [(b"x-a", b"1" * 900), (b"grpc-timeout", b"99m")],
                [(b"content-type", b"application/grpc"), (b"user-agent", b"u")],
                [(b"date", b"Mon, 1"), (b"x-a", b"2")],
                [(b"authorization", b"secret"), (b"grpc-status", b"0")],
            ]
        ),
        st.sampled_from([None, None, None, 0, 100, 4096]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(repeated)
def test_repeated_blocks_code_as_hpack_does(
    script: list[tuple[list[tuple[bytes, bytes]], int | None]],
) -> None:
    enc, dec = HeaderEncoder(), hpack.Decoder()
    henc, ours = hpack.Encoder(), HeaderDecoder(max_header_list_size=2**20)
    dec.max_header_list_size = 2**20
    for headers, table_size in script:
        if table_size is not None:
            enc.set_max_table_size(table_size)
            dec.max_allowed_table_size = table_size
            henc.header_table_size = table_size
        assert dec.decode(enc.encode(headers), raw=True) == headers
        assert ours.decode(henc.encode(headers)) == headers


def test_a_remembered_block_replays_its_insertions() -> None:
    enc = hpack.Encoder()
    head = enc.encode([(b"x-new", b"v")])  # a literal added to the table
    dec = HeaderDecoder(max_header_list_size=2**20)
    assert dec.decode(head) == [(b"x-new", b"v")]
    assert dec.decode(head) == [(b"x-new", b"v")]  # remembered: inserted again
    assert dec.decode(bytes([0x80 | 62, 0x80 | 63])) == [(b"x-new", b"v")] * 2
    listed = dec.decode(head)
    listed.append((b"mutated", b"by the caller"))
    assert dec.decode(head) == [(b"x-new", b"v")]


def test_a_block_reading_the_table_is_not_reused_once_it_changed() -> None:
    dec = HeaderDecoder(max_header_list_size=2**20)
    dec.decode(bytes([0x40, 1]) + b"a" + bytes([1]) + b"1")  # a: 1 at index 62
    ref = bytes([0x80 | 62])
    assert dec.decode(ref) == [(b"a", b"1")]
    dec.decode(bytes([0x40, 1]) + b"b" + bytes([1]) + b"2")  # b: 2 at 62 now
    assert dec.decode(ref) == [(b"b", b"2")]


def test_grpc_timeout_is_not_indexed() -> None:
    enc = HeaderEncoder()
    block = enc.encode([(b"grpc-timeout", b"100m")])
    assert block[0] == 0x00  # literal without indexing (RFC 7541 §6.2.2)
    assert enc.encode([(b"grpc-timeout", b"99m")])[0] == 0x00


def _indexed_literal(name: bytes, value: bytes) -> bytes:
    """A literal with incremental indexing and a new name, not Huffman-coded (RFC 7541 §6.2.1)."""
    return bytes([0x40, len(name)]) + name + bytes([len(value)]) + value


def _size_update(size: int) -> bytes:
    if size < 31:
        return bytes([0x20 | size])
    size -= 31  # RFC 7541 §5.1: a 5-bit prefix integer
    out = [0x3F]
    while size >= 128:
        out.append(size % 128 | 0x80)
        size //= 128
    return bytes([*out, size])


inserting = st.lists(
    st.tuples(st.sampled_from([b"a", b"bb", b"date"]), st.binary(min_size=0, max_size=40)),
    min_size=1,
    max_size=4,
)
reading = st.lists(st.integers(62, 70), min_size=1, max_size=3)  # dynamic entries, or past them


@settings(max_examples=300, deadline=None)
@given(
    st.integers(40, 400),
    st.lists(
        st.one_of(inserting.map(tuple), reading.map(tuple), st.integers(0, 400)),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=80),
)
@example(  # a cycle fills 100 octets (two entries of 34 of three); the table grows to 120
    100,
    [((b"a", b"1"), (b"a", b"2")), 120],
    [(0, False), (0, False), (0, False), (1, False), (0, False)],
)
def test_replayed_insertions_in_a_cycle_leave_the_table_as_hpack_has_it(
    capacity: int, kinds: list[tuple[object, ...] | int], sends: list[tuple[int, bool]]
) -> None:
    """A small table fills with one block's insertions sent again and again (nginx's response
    heads), among blocks that read it and table size updates; each block decodes as hpack
    decodes it, by `decode` and by `decode_judged`, and the table ends with the same entries
    in the same order."""
    blocks = []
    for kind in kinds:
        if isinstance(kind, int):  # a table size update, alone in its block
            blocks.append(_size_update(kind))
        elif isinstance(kind[0], int):  # indexed references into the dynamic table
            blocks.append(bytes(0x80 | i for i in kind))  # type: ignore[operator]
        else:
            blocks.append(b"".join(_indexed_literal(n, v) for n, v in kind))  # type: ignore[misc]
    theirs, ours = hpack.Decoder(), HeaderDecoder(max_header_list_size=2**20)
    resize = _size_update(capacity)
    assert theirs.decode(resize, raw=True) == ours.decode(resize) == []
    for pick, judged in sends:
        block = blocks[pick % len(blocks)]
        try:
            expected = theirs.decode(block, raw=True)
        except hpack.HPACKError:
            with pytest.raises(CompressionError):
                ours.decode(block)
            return  # a reference past the table ends the connection
        got = ours.decode_judged(block, len)[0] if judged else ours.decode(block)
        assert got == expected
    entries = len(theirs.header_table.dynamic_entries)
    probe = b"".join(bytes([0x80 | 62 + i]) for i in range(min(entries, 60)))
    assert ours.decode(probe) == theirs.decode(probe, raw=True)


def test_a_cycle_of_one_blocks_insertions_stops_changing_the_table() -> None:
    """Once one block's replays in a row have filled the table, a replay changes nothing: a
    block read from the table keeps its remembered verdict, and the inserting block its own."""
    dec = HeaderDecoder(max_header_list_size=2**20)
    dec.decode(_size_update(100))
    head = _indexed_literal(b"a", b"1") + _indexed_literal(b"b", b"2")  # 68 octets in the table
    reads = bytes([0x80 | 62])
    calls: list[int] = []

    def rule(fields: list[tuple[bytes, bytes]]) -> int:
        calls.append(1)
        return len(fields)

    for _ in range(3):  # the first fill (68), then past the capacity (136): a cycle
        assert dec.decode_judged(head, rule) == ([(b"a", b"1"), (b"b", b"2")], 2)
    judged = len(calls)
    for _ in range(5):
        assert dec.decode_judged(head, rule) == ([(b"a", b"1"), (b"b", b"2")], 2)
        assert dec.decode_judged(reads, rule) == ([(b"b", b"2")], 1)
    # Each judged once more: the head at its first replay that changed nothing (remembered
    # from then on), the reading block once; neither again while the cycle lasts.
    assert len(calls) == judged + 2
    dec.decode(_indexed_literal(b"c", b"3"))  # another insertion ends the cycle
    assert dec.decode_judged(reads, rule) == ([(b"c", b"3")], 1)
    assert dec.decode_judged(head, rule)[0] == [(b"a", b"1"), (b"b", b"2")]
    assert dec.decode(bytes([0x80 | 62, 0x80 | 63])) == [(b"b", b"2"), (b"a", b"1")]
