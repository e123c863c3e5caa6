"""The DNS codec against dnspython (a real implementation), and fuzzed within its limits."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs import dns as codec
from sofamesh.codecs.dns import DnsError, Question


def test_a_query_dnspython_builds_is_read() -> None:
    wire = dns.message.make_query("Orders.Mesh.Local.", "AAAA").to_wire()
    query = codec.parse_query(wire)
    assert query.questions == (Question("Orders.Mesh.Local", codec.TYPE_AAAA),)
    assert not query.is_response and query.opcode == 0 and query.flags & codec.FLAG_RD


def test_an_answer_dnspython_reads() -> None:
    query = codec.parse_query(codec.build_query(0x1234, Question("orders.mesh.local", 1)))
    wire = codec.build_answer(query, addresses=(bytes([240, 240, 1, 2]),), ttl=30)
    reply = dns.message.from_wire(wire)
    assert reply.id == 0x1234 and reply.rcode() == 0
    (rrset,) = reply.answer
    assert rrset.name.to_text() == "orders.mesh.local." and rrset.ttl == 30
    assert [r.address for r in rrset] == ["240.240.1.2"]
    assert reply.flags & dns.flags.AA and reply.flags & dns.flags.QR


@pytest.mark.parametrize("rcode", [codec.RCODE_NXDOMAIN, codec.RCODE_SERVFAIL])
def test_errors_and_empty_answers(rcode: int) -> None:
    query = codec.parse_query(codec.build_query(7, Question("x.mesh.local", codec.TYPE_AAAA)))
    reply = dns.message.from_wire(codec.build_answer(query, rcode))
    assert reply.rcode() == rcode and not reply.answer
    assert reply.question[0].rdtype == dns.rdatatype.AAAA


def test_compressed_names_are_followed() -> None:
    head = struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0)
    first = codec.encode_name("a.example") + struct.pack("!HH", 1, 1)
    second = b"\x01b\xc0\x0c" + struct.pack("!HH", 1, 1)  # "b" + pointer to "a.example"
    query = codec.parse_query(head + first + second)
    assert [q.name for q in query.questions] == ["a.example", "b.a.example"]


@pytest.mark.parametrize(
    "wire, why",
    [
        (b"\x00" * 11, "shorter than a header"),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01", "pointers"),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x05ab", "past the message"),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x40" + b"a" * 64, "not supported"),
        (struct.pack("!HHHHHH", 1, 0, 9, 0, 0, 0), "questions"),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63
         + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x00\x00\x01\x00\x01", "longer than"),
    ],
)  # fmt: skip
def test_malformed_messages_are_refused(wire: bytes, why: str) -> None:
    with pytest.raises(DnsError, match=why):
        codec.parse_query(wire)


def test_the_size_limit() -> None:
    with pytest.raises(DnsError, match="over the limit"):
        codec.parse_query(b"\x00" * 600, max_size=512)


@pytest.mark.parametrize("name", ["a..b", "x" * 64 + ".com", ("a" * 60 + ".") * 5, "café.local"])
def test_names_that_cannot_be_encoded(name: str) -> None:
    with pytest.raises(DnsError):
        codec.encode_name(name)


_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@given(labels=st.lists(_label, min_size=1, max_size=8), qtype=st.sampled_from([1, 28, 15, 255]))
@settings(max_examples=200, deadline=None)
def test_round_trip_and_dnspython_agree(labels: list[str], qtype: int) -> None:
    name = ".".join(labels)
    wire = codec.build_query(99, Question(name, qtype))
    assert codec.parse_query(wire).questions == (Question(name, qtype),)
    theirs = dns.message.from_wire(wire)
    assert theirs.question[0].name.to_text(omit_final_dot=True) == name
    assert (
        codec.parse_query(dns.message.make_query(name, qtype).to_wire()).questions[0].name == name
    )


@given(st.binary(max_size=600))
@settings(max_examples=500, deadline=None)
def test_any_bytes_parse_or_raise_dns_error(data: bytes) -> None:
    try:
        query = codec.parse_query(data)
    except DnsError:
        return
    assert len(query.questions) <= codec.MAX_QUESTIONS
    for q in query.questions:
        assert len(q.name) <= 4 * codec.MAX_NAME  # escaped bytes take four characters


@given(st.binary(min_size=12, max_size=300))
@settings(max_examples=300, deadline=None)
def test_answers_to_any_readable_query_are_readable(data: bytes) -> None:
    try:
        query = codec.parse_query(data)
        wire = codec.build_answer(query, codec.RCODE_NXDOMAIN)
    except DnsError:
        return
    assert codec.reply_id(wire) == query.id
    codec.parse_query(wire)
