"""The header map as SOFARPC (SimpleMapSerializer) and sofa-bolt-node write it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.bolt import (
    HeaderMapError,
    LocalProtocolError,
    encode_header_map,
    parse_header_map,
)
from sofamesh.codecs.bolt.headers import (
    HeaderPicker,
    _Layout,
    check_header_map,
    pick_headers,
)


def entry(key: bytes | None, value: bytes | None) -> bytes:
    def one(s: bytes | None) -> bytes:
        return b"\xff\xff\xff\xff" if s is None else len(s).to_bytes(4, "big") + s

    return one(key) + one(value)


def test_captured_service_header() -> None:
    raw = bytes.fromhex(
        "00000007736572766963650000001b636f6d2e6578616d706c652e4563686f536572766963653a312e30"
    )
    assert parse_header_map(raw) == (("service", "com.example.EchoService:1.0"),)
    assert encode_header_map({"service": "com.example.EchoService:1.0"}) == raw


def test_empty_value_is_length_zero_and_null_is_minus_one() -> None:
    raw = entry(b"empty", b"") + entry(b"null", None)
    assert parse_header_map(raw) == (("empty", ""), ("null", None))
    assert encode_header_map([("empty", ""), ("null", None)], keep_nulls=True) == raw


def test_nulls_are_skipped_by_default_as_sofarpc_writes() -> None:
    assert encode_header_map({"a": None, "b": ""}) == entry(b"b", b"")
    assert encode_header_map({}) == b""
    assert parse_header_map(b"") == ()


def test_any_negative_length_is_null_as_in_java() -> None:
    raw = b"\x00\x00\x00\x01k" + (-7).to_bytes(4, "big", signed=True)
    assert parse_header_map(raw) == (("k", None),)


def test_null_keys_are_dropped_empty_keys_kept() -> None:
    raw = entry(None, b"v") + entry(b"", b"w")
    assert parse_header_map(raw) == (("", "w"),)
    assert check_header_map(raw) == 2


def test_order_and_duplicates_are_kept() -> None:
    pairs = (("b", "1"), ("a", "2"), ("b", "3"))
    assert parse_header_map(encode_header_map(pairs)) == pairs


def test_utf8_and_invalid_utf8() -> None:
    assert parse_header_map(encode_header_map({"ключ": "値 😀"})) == (("ключ", "値 😀"),)
    assert parse_header_map(entry(b"k", b"\xff\xfe")) == (("k", "\ufffd\ufffd"),)


def test_unencodable_strings_are_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_header_map({"k": "\ud800"})
    with pytest.raises(LocalProtocolError):
        encode_header_map([(None, "v")])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"\x00\x00", "2 stray bytes at offset 0"),
        (entry(b"k", b"v") + b"\x00", "1 stray bytes at offset 10"),
        (b"\x00\x00\x00\x05abc", "overruns"),
        (b"\x00\x00\x00\x01a\x7f\xff\xff\xff", "overruns"),
        (entry(b"k", None) + b"\x00\x00\x00\x01", "overruns"),
    ],
)
def test_malformed_maps(raw: bytes, words: str) -> None:
    with pytest.raises(HeaderMapError, match=words):
        parse_header_map(raw)
    with pytest.raises(HeaderMapError, match=words):
        check_header_map(raw)


def test_entry_limit() -> None:
    raw = entry(b"a", b"1") * 3
    assert len(parse_header_map(raw, max_entries=3)) == 3
    with pytest.raises(HeaderMapError, match="more than 2"):
        parse_header_map(raw, max_entries=2)
    with pytest.raises(HeaderMapError, match="more than 2"):
        check_header_map(raw, max_entries=2)


headers = st.lists(st.tuples(st.text(max_size=12), st.none() | st.text(max_size=20)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(headers)
def test_round_trip_with_nulls(items: list[tuple[str, str | None]]) -> None:
    raw = encode_header_map(items, keep_nulls=True)
    assert parse_header_map(raw) == tuple(items)
    assert check_header_map(raw) == len(items)


@settings(max_examples=200, deadline=None)
@given(headers)
def test_round_trip_sofarpc_style(items: list[tuple[str, str | None]]) -> None:
    raw = encode_header_map(items)
    assert parse_header_map(raw) == tuple((k, v) for k, v in items if v is not None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_header_map_error(raw: bytes) -> None:
    try:
        parsed = parse_header_map(raw)
    except HeaderMapError:
        with pytest.raises(HeaderMapError):
            check_header_map(raw)
    else:
        assert check_header_map(raw) >= len(parsed)


WANTED = {b"service": 0, b"method": 1}


def test_picked_headers_are_the_first_non_null_values_of_their_keys() -> None:
    raw = (
        entry(b"Service", None)
        + entry(b"SERVICE", b"s:1")
        + entry(b"service", b"s:2")
        + entry(b"x-mesh-hop", b"1")
        + entry(None, b"dropped")
    )
    assert pick_headers(raw, WANTED, b"x-mesh-") == (["s:1", None], True)
    assert pick_headers(entry(b"x-mesh-null", None), WANTED, b"x-mesh-") == ([None, None], False)
    assert pick_headers(b"", WANTED, b"x-mesh-") == ([None, None], False)


@pytest.mark.parametrize(
    "raw",
    [b"\x00\x00", entry(b"k", b"v")[:-1], b"\x00\x00\x00\x01k", entry(b"k", b"v") * 3],
)
def test_a_malformed_map_picks_nothing(raw: bytes) -> None:
    assert pick_headers(raw, WANTED, b"x-", max_entries=2) is None
    with pytest.raises(HeaderMapError):
        parse_header_map(raw, max_entries=2)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "service",
                    "Method",
                    "x-mesh-a",
                    "other",
                    "SERVICE",
                    "é",
                    "X-Mesh-B",
                    "x-mes",
                    "servicf",
                    "xservice",
                    "",
                    "methoD",
                ]
            ),
            st.none() | st.text(max_size=5),
        ),
        max_size=8,
    )
)
def test_picking_agrees_with_parsing_the_whole_map(items: list[tuple[str, str | None]]) -> None:
    raw = encode_header_map(items, keep_nulls=True)
    pairs = [(k.lower(), v) for k, v in parse_header_map(raw) if v is not None]
    first = {k: next(v for kk, v in pairs if kk == k) for k, _ in reversed(pairs)}
    flagged = any(k.startswith("x-mesh-") for k, _ in pairs)
    assert pick_headers(raw, WANTED, b"x-mesh-") == (
        [first.get("service"), first.get("method")],
        flagged,
    )


_KEYS = [b"service", b"Service", b"method", b"x-mesh-a", b"x-mesh-b", b"othera", b"m", b""]
_VALUES = [b"s:1", b"s:2", b"m", b"\xff\xfe", b"", None]


@st.composite
def map_streams(draw: st.DrawFn) -> list[bytes]:
    """Header maps as one peer sends them: a few shapes (keys, value lengths) repeated with
    other values of the same lengths, other keys of the same length, nulls, and damage."""
    shapes = draw(st.lists(
        st.lists(st.tuples(st.sampled_from(_KEYS), st.sampled_from(_VALUES)), max_size=4),
        min_size=1, max_size=3,
    ))  # fmt: skip
    stream = []
    for _ in range(draw(st.integers(1, 12))):
        raw = bytearray(b"".join(entry(k, v) for k, v in draw(st.sampled_from(shapes))))
        if raw and draw(st.booleans()):  # same size, other bytes: values, keys or lengths
            at = draw(st.integers(0, len(raw) - 1))
            raw[at] = draw(st.sampled_from([0x00, 0x01, 0x32, 0x41, 0x61, 0xFF]))
        stream.append(bytes(raw))
    return stream


@settings(max_examples=300, deadline=None)
@given(map_streams(), st.integers(1, 5))
def test_a_picker_that_has_seen_a_map_shape_answers_as_a_fresh_one(
    stream: list[bytes], max_entries: int
) -> None:
    """A picker remembers the shapes of the maps it read (`_Layout`): every answer, shape
    remembered or not, is what a picker that never saw a map gives."""
    seasoned = HeaderPicker(WANTED, b"x-mesh-")
    for raw in stream * 3:
        assert seasoned.pick(raw, max_entries) == pick_headers(raw, WANTED, b"x-mesh-", max_entries)


def test_a_shape_seen_twice_in_a_row_is_read_in_one_pass() -> None:
    raw = entry(b"service", b"s:1") + entry(b"x-mesh-a", b"1") + entry(b"method", b"m")
    picker = HeaderPicker(WANTED, b"x-mesh-")
    picker.pick(raw)
    assert type(picker._layouts[len(raw)]) is tuple  # seen once: its lengths only
    picker.pick(raw)
    layout = picker._layouts[len(raw)]
    assert isinstance(layout, _Layout)  # twice: compiled
    other = entry(b"service", b"s:2") + entry(b"x-mesh-a", b"2") + entry(b"method", b"n")
    assert layout.read(other, 2) == (["s:2", "n"], True)
    invalid = entry(b"service", b"s\xff2") + entry(b"x-mesh-a", b"2") + entry(b"method", b"n")
    assert layout.read(invalid, 2) == (["s\ufffd2", "n"], True)  # as Java decodes it
    renamed = entry(b"servicf", b"s:2") + entry(b"x-mesh-a", b"2") + entry(b"method", b"n")
    assert layout.read(renamed, 2) is None  # same lengths, another key: walked instead
    assert picker.pick(renamed) == ([None, "n"], True)
    overrun = bytearray(other)
    overrun[-2] = 2  # the last value's length: 2, where 1 byte is left
    assert layout.read(bytes(overrun), 2) is None
    assert picker.pick(bytes(overrun)) is None


def test_a_map_naming_what_the_last_one_named_gets_its_answer_back() -> None:
    """Only the wanted values and the skeleton decide: another trace id of the same length
    gives the last answer (no decode), another service of the same length a new one."""

    def raw(service: bytes, trace: bytes) -> bytes:
        return entry(b"service", service) + entry(b"trace", trace) + entry(b"method", b"m")

    picker = HeaderPicker(WANTED, b"x-mesh-")
    first = [picker.pick(raw(b"s:1", b"aaaa")) for _ in range(3)][-1]
    assert picker.pick(raw(b"s:1", b"bbbb")) is first
    assert picker.pick(raw(b"s:2", b"bbbb")) == (["s:2", "m"], False)
    assert picker.pick(raw(b"s:1", b"cccc")) == first
