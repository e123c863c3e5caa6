"""The codec's field-line patterns accept exactly the grammar of RFC 9110 §5.5 as h11 reads it.

The patterns are written for speed (one character class scanned in a loop), so
each is checked against the grammar in its textbook form: a field value is runs
of visible bytes separated by SP / HTAB, between optional whitespace on the
parser's side and none on the writer's.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1 import HttpResponse, fast, writer

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
# The grammar as written in RFC 9110 §5.5 (field-vchar runs, SP / HTAB between).
_PARSED_VALUE = rb"[ \t]*(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?[ \t]*"
_PARSED_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":" + _PARSED_VALUE + rb"\r\n)*")
_WRITTEN_VALUE = rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?"
_WRITTEN_FIELDS = re.compile(rb"(?:" + _TOKEN + rb": " + _WRITTEN_VALUE + rb"\r\n)*")

# Bytes where the grammars draw their lines, and a few ordinary ones.
_EDGES = b" \t\r\n\x00\x01\x0b\x0c\x1f\x7f\x80\xff:a"
PIECES = st.binary(max_size=10) | st.lists(st.sampled_from(list(_EDGES)), max_size=10).map(bytes)


def _blocks(value: bytes) -> list[bytes]:
    return [
        value,
        b"a:" + value + b"\r\n",
        b"a: " + value + b"\r\n",
        b"a: " + value + b"\r\nb: x\r\n",
        b"x-y: 1\r\na:" + value + b"\r\n",
    ]


def _agree(block: bytes) -> None:
    assert (fast._FIELDS.fullmatch(block) is None) == (_PARSED_FIELDS.fullmatch(block) is None)
    assert (writer._FIELD_LINES.fullmatch(block) is None) == (
        _WRITTEN_FIELDS.fullmatch(block) is None
    )


@settings(max_examples=2000)
@given(PIECES)
def test_field_patterns_accept_what_the_grammar_accepts(value: bytes) -> None:
    for block in _blocks(value):
        _agree(block)
    expected = re.fullmatch(_WRITTEN_VALUE, value) is None
    assert (writer._FIELD_VALUE_RE.fullmatch(value) is None) == expected


def test_field_patterns_agree_on_every_pair_of_bytes() -> None:
    for a in range(256):
        for b in range(256):
            value = bytes((a, b))
            _agree(b"a:" + value + b"\r\n")
            _agree(b"a: " + value + b"\r\n")
            expected = re.fullmatch(_WRITTEN_VALUE, value) is None
            assert (writer._FIELD_VALUE_RE.fullmatch(value) is None) == expected


def test_field_patterns_draw_the_lines_where_the_rfc_does() -> None:
    assert fast._FIELDS.fullmatch(b"a: Thu, 03 Dec 2026 12:40:00 GMT \t\r\n")
    assert fast._FIELDS.fullmatch(b"a:\r\n")
    assert not fast._FIELDS.fullmatch(b"a: x\x00y\r\n")
    assert not fast._FIELDS.fullmatch(b"a: x\ry\r\n")
    assert writer._FIELD_LINES.fullmatch(b"a: x \t y\r\n")
    assert not writer._FIELD_LINES.fullmatch(b"a: x \r\n")  # trailing whitespace is not written
    assert not writer._FIELD_LINES.fullmatch(b"a:  x\r\n")
    assert not writer._FIELD_LINES.fullmatch(b"a: x\x0by\r\n")


@settings(max_examples=3000)
@given(st.lists(st.tuples(st.sampled_from([b"a", b"x-y", b"server"]), PIECES), max_size=4))
def test_the_writer_accepts_exactly_the_values_the_grammar_accepts(
    fields: list[tuple[bytes, bytes]],
) -> None:
    valid = all(re.fullmatch(_WRITTEN_VALUE, v) for _, v in fields)
    try:
        data, _ = writer.encode_response(HttpResponse(200, fields, b"ok"), head=False, close=False)
    except ValueError:
        assert not valid
    else:
        assert valid
        assert data.count(b"\r\n") == len(fields) + 3  # status, fields, content-length, end


def test_the_writer_takes_values_with_odd_but_valid_spacing() -> None:
    for value in (b"", b"a:  b", b"a: \tb", b"x\t y"):
        data, _ = writer.encode_response(
            HttpResponse(200, [(b"a", value)], b""), head=False, close=False
        )
        assert b"a: " + value + b"\r\n" in data


@settings(max_examples=3000)
@given(
    st.lists(st.tuples(st.sampled_from([b"a", b"X-Y", b"", b"a b", b"\x80"]), PIECES), max_size=4)
)
def test_the_parser_reads_exactly_the_blocks_the_grammar_accepts(
    fields: list[tuple[bytes, bytes]],
) -> None:
    block = b"".join(name + b":" + value + b"\r\n" for name, value in fields)
    for candidate in (block, block[:-2], block + b"x"):
        parsed = fast._fields(candidate)
        assert (parsed is None) == (_PARSED_FIELDS.fullmatch(candidate) is None), candidate
        if parsed is not None:
            lines = candidate.split(b"\r\n")[:-1]
            assert parsed == [
                (n.lower(), v.strip(b" \t")) for n, _, v in (x.partition(b":") for x in lines)
            ]
