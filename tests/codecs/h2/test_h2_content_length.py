"""content-length against the DATA received (RFC 9113 §8.1.1), in the lean codec, and its judge.

A request or response whose DATA does not add up to its content-length is
malformed: RST_STREAM PROTOCOL_ERROR as soon as the DATA passed it, or when the
stream ends short of it; the connection and its other streams carry on. A
response that has no content (to a HEAD, a 204, a 304) may say any length.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sofamesh.codecs.h2 import (
    DEFAULT_H2_LIMITS,
    DataReceived,
    H2Limits,
    HeadersReceived,
    LeanH2Codec,
    ReferenceH2Codec,
    StreamReset,
    TrailersReceived,
)
from sofamesh.codecs.h2.differential import DIFFERENCES, H2Mismatch, judge
from sofamesh.codecs.h2.malformed import malformed_request, malformed_response

PROTOCOL_ERROR = 0x1
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/p"), (b":authority", b"h")]


def pair(limits: H2Limits = DEFAULT_H2_LIMITS) -> tuple[LeanH2Codec, LeanH2Codec]:
    c, s = LeanH2Codec(client_side=True), LeanH2Codec(client_side=False, limits=limits)
    c.initiate()
    s.initiate()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    return c, s


def reset(sid: int) -> StreamReset:
    return StreamReset(stream_id=sid, error_code=PROTOCOL_ERROR, remote=False)


def rst_frame(sid: int) -> bytes:
    return b"\x00\x00\x04\x03\x00" + struct.pack(">II", sid, PROTOCOL_ERROR)


def test_more_data_than_declared_is_a_stream_error_as_soon_as_it_is_exceeded() -> None:
    c, s = pair()
    c.send_headers(1, [*POST, (b"content-length", b"10")])
    c.send_data(1, b"x" * 6)
    c.send_data(1, b"y" * 6)  # 12 octets of 10: the stream is malformed here, not at its end
    c.send_headers(3, POST, end_stream=True)
    events = s.receive_data(c.data_to_send())
    assert events == [
        HeadersReceived(stream_id=1, headers=[*POST, (b"content-length", b"10")], end_stream=False),
        DataReceived(stream_id=1, data=b"x" * 6, flow_length=6, end_stream=False),
        reset(1),
        HeadersReceived(stream_id=3, headers=POST, end_stream=True),
    ]
    assert rst_frame(1) in s.data_to_send()
    assert (s.stream_errors, s.content_length_errors) == (1, 1)
    s.send_headers(3, [(b":status", b"200")], end_stream=True)  # the neighbour is served
    assert c.receive_data(s.data_to_send())[-1].stream_id == 3


@pytest.mark.parametrize("ending", ["data", "trailers", "headers"])
def test_a_body_ending_short_of_its_content_length_is_a_stream_error(ending: str) -> None:
    c, s = pair()
    head = [*POST, (b"content-length", b"10")]
    c.send_headers(1, head, end_stream=ending == "headers")
    if ending != "headers":
        c.send_data(1, b"x" * 4)
        if ending == "data":
            c.end_stream(1)
        else:
            c.send_headers(1, [(b"x-t", b"1")], end_stream=True)
    events = s.receive_data(c.data_to_send())
    # A request that ends in its own header block never reached the application.
    assert (reset(1) in events) is (ending != "headers")
    assert all(type(ev) is not TrailersReceived for ev in events)
    assert rst_frame(1) in s.data_to_send()
    assert s.content_length_errors == 1


@pytest.mark.parametrize("declared", [b"0", b"10", b"010"])
def test_a_body_of_the_declared_length_passes(declared: bytes) -> None:
    c, s = pair()
    c.send_headers(1, [*POST, (b"content-length", declared), (b"content-length", declared)])
    size = int(declared)
    if size:
        c.send_data(1, b"x" * 7)
        c.send_data(1, b"x" * (size - 7), end_stream=True)
    else:
        c.end_stream(1)
    events = s.receive_data(c.data_to_send())
    assert sum(len(ev.data) for ev in events if isinstance(ev, DataReceived)) == size
    assert s.stream_errors == 0


def test_padding_does_not_count_towards_the_content_length() -> None:
    c, s = pair()
    c.send_headers(1, [*POST, (b"content-length", b"3")])
    s.receive_data(c.data_to_send())
    padded = b"\x00\x00\x08\x00\x09" + struct.pack(">I", 1) + b"\x04abc\x00\x00\x00\x00"
    events = s.receive_data(padded)
    assert events == [DataReceived(stream_id=1, data=b"abc", flow_length=8, end_stream=True)]


@pytest.mark.parametrize("value", [b"", b"1x", b"-1", b"5, 5", b" 5"])
def test_an_invalid_content_length_makes_the_request_malformed(value: bytes) -> None:
    c, s = pair()
    c.send_headers(1, [*POST, (b"content-length", value)], end_stream=True)
    assert s.receive_data(c.data_to_send()) == []
    assert rst_frame(1) in s.data_to_send()
    assert s.content_length_errors == 1


def test_conflicting_content_lengths_make_the_request_malformed() -> None:
    assert malformed_request([*POST, (b"content-length", b"5"), (b"content-length", b"6")])[0]
    assert malformed_request([*POST, (b"content-length", b"5"), (b"content-length", b"5")]) == (
        "",
        5,
    )


def test_a_stream_without_content_length_declares_none() -> None:
    assert malformed_request(POST) == ("", None)
    assert malformed_response([(b":status", b"200")]) == ("", None)


def respond(
    method: bytes, status: bytes, declared: bytes, body: bytes
) -> tuple[list[object], LeanH2Codec]:
    """A client's events for a response to `method` declaring `declared`, carrying `body`."""
    c, s = pair()
    c.send_headers(1, [(b":method", method), *POST[1:]], end_stream=True)
    s.receive_data(c.data_to_send())
    fields = [(b":status", status), (b"content-length", declared)]
    s.send_headers(1, fields, end_stream=not body)
    if body:
        s.send_data(1, body, end_stream=True)
    return list(c.receive_data(s.data_to_send())), c


def test_a_response_short_of_its_content_length_is_a_stream_error_its_reader_hears_of() -> None:
    events, c = respond(b"GET", b"200", b"10", b"abc")
    assert events[-1] == reset(1)
    assert rst_frame(1) in c.data_to_send()
    events, c = respond(b"GET", b"200", b"10", b"")  # ended by its header block
    assert events == [reset(1)]


@pytest.mark.parametrize(
    ("method", "status"), [(b"HEAD", b"200"), (b"GET", b"304"), (b"GET", b"204")]
)
def test_a_response_without_content_may_declare_any_length(method: bytes, status: bytes) -> None:
    events, c = respond(method, status, b"1234", b"")
    assert events == [
        HeadersReceived(
            stream_id=1,
            headers=[(b":status", status), (b"content-length", b"1234")],
            end_stream=True,
        )
    ]
    assert c.stream_errors == 0


def test_the_window_of_refused_data_comes_back_at_once() -> None:
    c, s = pair(H2Limits(connection_window=65_535))
    c.send_headers(1, [*POST, (b"content-length", b"1")])
    c.send_data(1, b"x" * 40_000)  # three DATA frames: 16,384 + 16,384 + 7,232 octets
    s.receive_data(c.data_to_send())
    # No reader will acknowledge those octets: half the window is given back at once.
    update = b"\x00\x00\x04\x08\x00" + struct.pack(">II", 0, 32_768)
    assert update in s.data_to_send()


# -- the judge --------------------------------------------------------------------------------


def server(kind: str) -> LeanH2Codec | ReferenceH2Codec:
    codec = (LeanH2Codec if kind == "lean" else ReferenceH2Codec)(client_side=False)
    codec.initiate()
    return codec


def request_bytes(
    declared: bytes, chunks: list[bytes], trailers: bool = False, method: bytes = b"POST"
) -> bytes:
    c = ReferenceH2Codec(client_side=True)
    c.initiate()
    head = [(b":method", method), *POST[1:], (b"content-length", declared)]
    c.send_headers(1, head, end_stream=not chunks)
    for i, chunk in enumerate(chunks):
        c.send_data(1, chunk, end_stream=i == len(chunks) - 1 and not trailers)
    if trailers:
        c.send_headers(1, [(b"x-t", b"1")], end_stream=True)
    c.send_headers(3, POST, end_stream=True)
    return c.data_to_send()


@pytest.mark.parametrize(
    ("declared", "chunks", "trailers"),
    [
        (b"5", [b"abc", b"de"], False),  # right
        (b"5", [b"abc", b"def"], False),  # past it: h2 breaks the connection
        (b"5", [b"abc"], False),  # short at END_STREAM on DATA: likewise
        (b"5", [b"abc"], True),  # short at trailers: h2 lets it through
        (b"5", [], False),  # short at the header block: likewise
    ],
)
def test_the_judge_allows_content_length_differences_exactly(
    declared: bytes, chunks: list[bytes], trailers: bool
) -> None:
    judge(server, request_bytes(declared, chunks, trailers))


@pytest.mark.parametrize(
    ("chunks", "breach"), [([b"ab", b"cd"], False), ([b"ab"], True), ([b"abc", b"def"], True)]
)
def test_a_head_request_is_held_to_its_content_length_like_any_request(
    chunks: list[bytes], breach: bool
) -> None:
    """Only a response to HEAD is exempt (RFC 9110 §9.3.2): a HEAD request that carries a
    body is held to the length it declares, by both codecs (the judge allows only the
    documented stream-vs-connection difference)."""
    data = request_bytes(b"4", chunks, method=b"HEAD")
    judge(server, data)
    lean = server("lean")
    events = lean.receive_data(data)
    assert (reset(1) in events) is breach
    assert lean.content_length_errors == int(breach)
    assert HeadersReceived(stream_id=3, headers=POST, end_stream=True) in events


class _Lax(LeanH2Codec):
    """A lean codec that resets a breaching stream with the wrong code."""

    def _content_length_breach(self, sid: int, out: list[object]) -> None:  # type: ignore[override]
        self.guard.content_length_errors += 1
        self.reset(sid, 0x8)
        out.append(StreamReset(stream_id=sid, error_code=0x8, remote=False))


@pytest.mark.parametrize("trailers", [False, True])
def test_the_judge_refuses_a_codec_that_answers_a_breach_otherwise(trailers: bool) -> None:
    def make(kind: str) -> LeanH2Codec | ReferenceH2Codec:
        codec = _Lax(client_side=False) if kind == "lean" else ReferenceH2Codec(client_side=False)
        codec.initiate()
        return codec

    with pytest.raises(H2Mismatch):
        judge(make, request_bytes(b"5", [b"abc", b"def"] if not trailers else [b"ab"], trailers))


def test_every_difference_is_documented_with_its_rfc_section() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "protocols" / "grpc.md").read_text()
    for name, difference in DIFFERENCES.items():
        assert f"**{name}**" in doc, name
        for section in difference.rfc.split(", "):
            assert section.replace("RFC ", "") in doc or section in doc, (name, section)
