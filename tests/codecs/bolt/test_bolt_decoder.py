"""FrameDecoder: limits, bad input, error recovery, EOF, and every response status."""

from __future__ import annotations

import re
import struct

import pytest
from bolt_vectors import H4_ECHO_REQUEST, HEARTBEAT, V2_CRC_REQUEST, V2_CRC_RESPONSE

from sofamesh.codecs.bolt import (
    BoltLimits,
    BoltProtocolError,
    CommandCode,
    CrcMismatchError,
    FrameDecoder,
    FrameTooLargeError,
    HeaderMapError,
    InvalidLengthError,
    LocalProtocolError,
    RequestFrame,
    ResponseFrame,
    ResponseStatus,
    TruncatedFrameError,
    UnknownCommandCodeError,
    UnknownCommandTypeError,
    UnknownProtocolError,
    UnsupportedVersionError,
    encode,
    reply,
    request,
)

V1_REQ = struct.Struct(">BBHBiBihhi")
V2_REQ = struct.Struct(">BBBHBiBBihhi")


def v1_request_head(*, rid: int = 9, cl: int = 0, hl: int = 0, bl: int = 0, cmd: int = 1) -> bytes:
    return V1_REQ.pack(1, 1, cmd, 1, rid, 1, 3000, cl, hl, bl)


def feed(data: bytes, limits: BoltLimits | None = None) -> FrameDecoder:
    decoder = FrameDecoder(limits) if limits else FrameDecoder()
    decoder.receive_data(data)
    return decoder


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"GET / HTTP/1.1\r\n", UnknownProtocolError, "0x47 ('G'"),
        (b"\x16\x03\x01", UnknownProtocolError, "TLS"),
        (b"\xda\xbb\xc2", UnknownProtocolError, "Dubbo"),
        (b"\x00", UnknownProtocolError, "0x00"),
        (b"\x02\x03", UnsupportedVersionError, "ver1 3"),
        (b"\x01\x03", UnknownCommandTypeError, "type 3"),
        (b"\x02\x02\x07", UnknownCommandTypeError, "type 7"),
    ],
)
def test_unknowable_layouts_fail_on_the_byte_that_decides(
    data: bytes, error: type[BoltProtocolError], words: str
) -> None:
    decoder = feed(data)
    with pytest.raises(error, match=r"^bolt.*" + re.escape(words)) as info:
        decoder.next_frame()
    assert info.value.fatal
    assert info.value.header is None


@pytest.mark.parametrize(("cl", "hl", "bl"), [(-1, 0, 0), (0, -2, 0), (0, 0, -5)])
def test_negative_lengths_are_fatal_and_carry_the_header(cl: int, hl: int, bl: int) -> None:
    decoder = feed(v1_request_head(rid=77, cl=cl, hl=hl, bl=bl))
    with pytest.raises(InvalidLengthError) as info:
        decoder.next_frame()
    assert info.value.fatal
    assert (info.value.request_id, info.value.version) == (77, 1)


@pytest.mark.parametrize(
    ("field", "lengths", "limit"),
    [("body", (0, 0, 101), 100), ("header map", (0, 41, 0), 40), ("class name", (31, 0, 0), 30)],
)
def test_limits_are_enforced_on_the_fixed_header_alone(
    field: str, lengths: tuple[int, int, int], limit: int
) -> None:
    limits = BoltLimits(max_body_size=100, max_header_size=40, max_class_name_size=30)
    cl, hl, bl = lengths
    decoder = feed(v1_request_head(rid=3, cl=cl, hl=hl, bl=bl), limits)
    with pytest.raises(FrameTooLargeError, match=f"{field} of {max(lengths)} bytes") as info:
        decoder.next_frame()
    assert (info.value.size, info.value.limit) == (max(lengths), limit)
    assert info.value.request_id == 3
    assert info.value.fatal


def test_frame_at_the_limits_is_accepted() -> None:
    limits = BoltLimits(max_body_size=5, max_header_size=0, max_class_name_size=2)
    frame = RequestFrame(1, body=b"12345", class_name=b"ab")
    assert feed(encode(frame), limits).next_frame() == frame


def test_fatal_error_breaks_the_decoder_for_good() -> None:
    decoder = feed(b"\x07" + HEARTBEAT)
    with pytest.raises(UnknownProtocolError) as first:
        decoder.next_frame()
    decoder.receive_data(HEARTBEAT)  # ignored
    with pytest.raises(UnknownProtocolError) as again:
        decoder.next_frame()
    assert again.value is first.value
    assert decoder.buffered == 0


def corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


@pytest.mark.parametrize("at", [6, 30, 200, -1])
def test_bad_crc_is_fatal_and_names_both_values(at: int) -> None:
    at = at % len(V2_CRC_REQUEST)
    decoder = feed(corrupt(V2_CRC_REQUEST, at))
    with pytest.raises(CrcMismatchError, match="CRC32 mismatch") as info:
        decoder.next_frame()
    assert info.value.expected != info.value.actual
    assert info.value.version == 2
    assert info.value.fatal


def test_ver1_1_with_switch_set_has_no_trailer_as_in_java() -> None:
    # RpcCommandDecoderV2 reads a CRC only when ver1 == 2; Java clients send ver1 = 1,
    # switch = 1 and no trailer.
    frame = request(4, b"body", version=2)._replace(ver1=1, switch=1)
    data = encode(frame)
    assert len(data) == 24 + len(frame.class_name) + 4
    assert feed(data).next_frame() == frame


def test_any_switch_with_bit0_asks_for_crc() -> None:
    frame = request(4, b"body", version=2, crc=True)._replace(switch=0x83)
    data = encode(frame)
    assert feed(data).next_frame() == frame
    with pytest.raises(CrcMismatchError):
        feed(corrupt(data, 30)).next_frame()


def test_unknown_command_code_skips_the_frame_and_says_whom_to_answer() -> None:
    bad = v1_request_head(rid=41, cmd=CommandCode.RPC_RESPONSE, bl=3) + b"abc"
    decoder = feed(bad + HEARTBEAT)
    with pytest.raises(UnknownCommandCodeError) as info:
        decoder.next_frame()
    assert not info.value.fatal
    assert info.value.header is not None
    assert info.value.header.cmd_code == CommandCode.RPC_RESPONSE
    answer = reply(info.value.header, status=ResponseStatus.CODEC_EXCEPTION)
    assert (answer.request_id, answer.status) == (41, ResponseStatus.CODEC_EXCEPTION)
    frame = decoder.next_frame()
    assert frame is not None and frame.is_heartbeat


def test_response_with_request_code_is_refused() -> None:
    raw = struct.pack(">BBHBiBHhhi", 1, 0, CommandCode.RPC_REQUEST, 1, 8, 1, 0, 0, 0, 0)
    with pytest.raises(UnknownCommandCodeError, match="command code 1"):
        feed(raw).next_frame()


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (b"\x00\x00\x00", "stray"),
        (b"\x00\x00\x00\x09key", "overruns"),
        (b"\x00\x00\x00\x01k", "stray"),
        (b"\x00\x00\x00\x01k\x00\x00\x00\x05v", "overruns"),
        (b"\x00\x00\x00\x00\x00\x00\x00\x00" * 3, "more than 2 entries"),
    ],
)
def test_malformed_header_map_skips_the_frame(header: bytes, words: str) -> None:
    frame = RequestFrame(12, header=header, body=b"x")
    decoder = feed(encode(frame) + HEARTBEAT, BoltLimits(max_header_entries=2))
    with pytest.raises(HeaderMapError, match=words) as info:
        decoder.next_frame()
    assert not info.value.fatal
    assert info.value.request_id == 12
    assert decoder.next_frame() is not None


def test_a_request_header_map_can_be_left_to_its_reader() -> None:
    bad = b"\x00\x00\x00\x09key"
    decoder = FrameDecoder(check_request_headers=False)
    decoder.receive_data(encode(RequestFrame(12, header=bad, body=b"x")))
    decoder.receive_data(encode(ResponseFrame(13, header=bad)))
    frame = decoder.next_frame()
    assert isinstance(frame, RequestFrame) and frame.header == bad
    with pytest.raises(HeaderMapError, match="overruns"):  # a response's is checked
        decoder.next_frame()


def test_v2_error_header_gives_a_v2_crc_reply() -> None:
    data = corrupt(V2_CRC_REQUEST, 6)  # request id byte: CRC fails, header still readable
    with pytest.raises(CrcMismatchError) as info:
        feed(data).next_frame()
    assert info.value.header is not None
    answer = reply(info.value.header, status=ResponseStatus.CODEC_EXCEPTION, body=b"")
    assert (answer.version, answer.ver1, answer.switch, answer.has_crc) == (2, 2, 1, True)
    assert feed(encode(answer)).next_frame() == answer


def test_eof_inside_a_frame_is_an_error_and_between_frames_is_not() -> None:
    decoder = feed(HEARTBEAT + HEARTBEAT[:10])
    decoder.receive_eof()
    assert decoder.next_frame() is not None
    with pytest.raises(TruncatedFrameError, match="10 bytes"):
        decoder.next_frame()
    clean = feed(HEARTBEAT)
    clean.receive_eof()
    assert len(list(clean)) == 1
    assert clean.next_frame() is None
    with pytest.raises(LocalProtocolError):
        clean.receive_data(b"\x01")


def test_accepts_bytearray_and_memoryview_and_does_not_alias_them() -> None:
    chunk = bytearray(H4_ECHO_REQUEST)
    decoder = FrameDecoder()
    decoder.receive_data(memoryview(chunk)[:100])
    decoder.receive_data(chunk[100:])
    chunk[:] = b"\x00" * len(chunk)  # the caller reuses its buffer
    frame = decoder.next_frame()
    assert frame is not None and encode(frame) == H4_ECHO_REQUEST
    assert type(frame.body) is bytes and type(frame.header) is bytes


def test_bodies_are_bytes_even_when_buffered() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(V2_CRC_RESPONSE[:50])
    decoder.receive_data(V2_CRC_RESPONSE[50:] + V2_CRC_RESPONSE)
    frames = list(decoder)
    assert len(frames) == 2 and frames[0] == frames[1]
    assert all(type(f.body) is bytes and type(f.class_name) is bytes for f in frames)


@pytest.mark.parametrize("status", list(ResponseStatus))
def test_every_response_status(status: ResponseStatus) -> None:
    for version, crc in ((1, False), (2, False), (2, True)):
        req = request(100 + status, b"", version=version, crc=crc)
        frame = feed(encode(reply(req, status=status, body=b"err"))).next_frame()
        assert isinstance(frame, ResponseFrame)
        assert frame.status is status
        assert frame.request_id == 100 + status


def test_unknown_status_passes_through_as_an_int() -> None:
    frame = feed(encode(ResponseFrame(1, status=0xBEEF))).next_frame()
    assert isinstance(frame, ResponseFrame)
    assert frame.status == 0xBEEF and type(frame.status) is int


def test_negative_request_ids_from_a_wrapped_java_counter_are_accepted() -> None:
    frame = RequestFrame(-(2**31), body=b"x")
    assert feed(encode(frame)).next_frame() == frame


def test_oneway_requests() -> None:
    frame = request(3, b"x", oneway=True)
    decoded = feed(encode(frame)).next_frame()
    assert decoded == frame and decoded.kind.value == "oneway"
    assert encode(frame)[1] == 2
