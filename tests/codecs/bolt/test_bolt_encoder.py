"""encode(), the frame constructors, and the proxy helpers that patch encoded frames."""

from __future__ import annotations

import zlib

import pytest
from bolt_vectors import (
    H4_ECHO_REQUEST,
    H4_ECHO_RESPONSE,
    HEARTBEAT,
    HEARTBEAT_ACK,
    V2_CRC_REQUEST,
    V2_CRC_RESPONSE,
)

from sofamesh.codecs.bolt import (
    SOFA_REQUEST_CLASS,
    SOFA_RESPONSE_CLASS,
    CommandCode,
    CrcMismatchError,
    FrameDecoder,
    LocalProtocolError,
    RequestFrame,
    ResponseFrame,
    encode,
    encode_request_as,
    encode_v1_reply,
    frame_length,
    heartbeat,
    heartbeat_ack,
    read_request_id,
    reply,
    request,
    with_request_id,
    with_timeout,
)
from sofamesh.codecs.bolt.frames import Frame


def decode(data: bytes) -> Frame:
    decoder = FrameDecoder()
    decoder.receive_data(data)
    frames = list(decoder)
    assert len(frames) == 1 and decoder.buffered == 0
    return frames[0]


def body_of(data: bytes) -> bytes:
    return decode(data).body


def test_request_constructor_reproduces_the_node_client_bytes() -> None:
    frame = request(1, body_of(H4_ECHO_REQUEST), headers={"service": "com.example.EchoService:1.0"})
    assert frame.class_name == SOFA_REQUEST_CLASS
    assert encode(frame) == H4_ECHO_REQUEST


def test_reply_constructor_reproduces_the_node_server_bytes() -> None:
    asked = decode(H4_ECHO_REQUEST)
    assert isinstance(asked, RequestFrame)
    answer = reply(asked, body=body_of(H4_ECHO_RESPONSE))
    assert answer.class_name == SOFA_RESPONSE_CLASS
    assert encode(answer) == H4_ECHO_RESPONSE


def test_v2_crc_reply_reproduces_the_node_server_bytes() -> None:
    asked = decode(V2_CRC_REQUEST)
    assert isinstance(asked, RequestFrame)
    assert encode(reply(asked, body=body_of(V2_CRC_RESPONSE))) == V2_CRC_RESPONSE
    rebuilt = request(5, asked.body, headers=asked.headers(), version=2, crc=True)
    assert encode(rebuilt) == V2_CRC_REQUEST


def test_heartbeat_and_ack_reproduce_the_captures() -> None:
    beat = heartbeat(7)
    assert encode(beat) == HEARTBEAT
    assert encode(heartbeat_ack(beat)) == HEARTBEAT_ACK
    assert beat.is_heartbeat and heartbeat_ack(beat).is_heartbeat


def test_v2_heartbeat_ack_keeps_version_and_crc() -> None:
    beat = heartbeat(9, version=2, crc=True)
    ack = decode(encode(heartbeat_ack(beat)))
    assert isinstance(ack, ResponseFrame)
    assert (ack.version, ack.ver1, ack.switch, ack.cmd_code) == (2, 2, 1, CommandCode.HEARTBEAT)


def test_request_without_crc_in_v2() -> None:
    frame = request(2, b"abc", version=2)
    data = encode(frame)
    assert (data[0], data[1], data[11]) == (2, 2, 0)
    assert frame_length(data) == len(data) == 24 + len(SOFA_REQUEST_CLASS) + 3


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (RequestFrame(1, class_name=b"c" * 0x8000), "must each fit"),
        (RequestFrame(1, header=b"h" * 0x8000), "must each fit"),
        (RequestFrame(1, cmd_code=CommandCode.RPC_RESPONSE), "command code 2"),
        (ResponseFrame(1, cmd_code=CommandCode.RPC_REQUEST), "command code 1"),
        (RequestFrame(1, version=3), "unsupported version 3"),
        (RequestFrame(1, version=2, ver1=0), "ver1 0"),
        (RequestFrame(1, switch=1), "v1 frames need"),
        (RequestFrame(2**31), "cannot encode frame"),
        (RequestFrame(1, timeout_ms=-(2**31) - 1), "cannot encode frame"),
        (ResponseFrame(1, status=0x10000), "cannot encode frame"),
        (RequestFrame(1, codec=256), "cannot encode frame"),
        (RequestFrame(1, version=2, switch=-1), "cannot encode frame"),
    ],
)
def test_encode_refuses_what_the_wire_cannot_carry(frame: Frame, words: str) -> None:
    with pytest.raises(LocalProtocolError, match=words):
        encode(frame)


def test_encode_refuses_non_frames() -> None:
    with pytest.raises(TypeError):
        encode((1, b""))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [lambda: request(1, b"", version=1, crc=True), lambda: request(1, b"", version=5)],
)
def test_constructors_refuse_impossible_versions(make: object) -> None:
    with pytest.raises(LocalProtocolError):
        make()  # type: ignore[operator]


@pytest.mark.parametrize("data", [H4_ECHO_REQUEST, H4_ECHO_RESPONSE, V2_CRC_REQUEST, HEARTBEAT_ACK])
def test_with_request_id_changes_only_the_id_and_the_crc(data: bytes) -> None:
    patched = with_request_id(data, 0x7FFFFFF0)
    assert read_request_id(patched) == 0x7FFFFFF0
    assert decode(patched) == decode(data)._replace(request_id=0x7FFFFFF0)
    off = 5 if data[0] == 1 else 6
    changed = [i for i in range(len(data)) if data[i] != patched[i]]
    crc_bytes = set(range(len(data) - 4, len(data))) if data is V2_CRC_REQUEST else set()
    assert set(changed) - crc_bytes <= set(range(off, off + 4))
    if data is V2_CRC_REQUEST:
        assert zlib.crc32(patched[:-4]).to_bytes(4, "big") == patched[-4:]


@pytest.mark.parametrize("data", [H4_ECHO_RESPONSE, V2_CRC_RESPONSE, HEARTBEAT_ACK])
def test_encode_v1_reply_is_encode_of_the_response_as_v1_under_the_id(data: bytes) -> None:
    resp = decode(data)
    assert isinstance(resp, ResponseFrame)
    as_v1 = resp._replace(request_id=-7, version=1, ver1=1, switch=0)
    assert encode_v1_reply(resp, -7) == encode(as_v1)


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (ResponseFrame(1, cmd_code=CommandCode.RPC_REQUEST), "command code 1"),
        (ResponseFrame(1, header=b"h" * 0x8000), "must each fit"),
        (ResponseFrame(1, status=0x10000), "cannot encode frame"),
    ],
)
def test_encode_v1_reply_refuses_as_encode_does(frame: ResponseFrame, words: str) -> None:
    with pytest.raises(LocalProtocolError, match=words):
        encode_v1_reply(frame, 1)


@pytest.mark.parametrize("data", [H4_ECHO_REQUEST, V2_CRC_REQUEST, HEARTBEAT])
@pytest.mark.parametrize("oneway", [False, True])
def test_encode_request_as_is_encode_of_the_request_with_its_new_parts(
    data: bytes, oneway: bool
) -> None:
    req = decode(data)
    assert isinstance(req, RequestFrame)
    req = req._replace(oneway=oneway)
    header = req.header + b"\x00\x00\x00\x01k\x00\x00\x00\x01v"
    expected = encode(req._replace(header=header, timeout_ms=77), request_id=9)
    assert encode_request_as(req, 9, header, 77) == expected


@pytest.mark.parametrize(
    ("frame", "header", "words"),
    [
        (RequestFrame(1, cmd_code=CommandCode.RPC_RESPONSE), b"", "command code 2"),
        (RequestFrame(1), b"h" * 0x8000, "must each fit"),
        (RequestFrame(1), b"", "cannot encode frame"),
    ],
)
def test_encode_request_as_refuses_as_encode_does(
    frame: RequestFrame, header: bytes, words: str
) -> None:
    timeout = 1 << 31 if words == "cannot encode frame" else 5
    with pytest.raises(LocalProtocolError, match=words):
        encode_request_as(frame, 1, header, timeout)


def test_with_request_id_equals_encode_under_another_id() -> None:
    frame = decode(V2_CRC_REQUEST)
    assert encode(frame, request_id=-3) == with_request_id(V2_CRC_REQUEST, -3)


@pytest.mark.parametrize("data", [H4_ECHO_REQUEST, V2_CRC_REQUEST, HEARTBEAT])
def test_with_timeout(data: bytes) -> None:
    patched = with_timeout(data, 250)
    frame = decode(patched)
    assert isinstance(frame, RequestFrame)
    assert frame == decode(data)._replace(timeout_ms=250)


def test_with_timeout_refuses_responses() -> None:
    with pytest.raises(LocalProtocolError, match="no timeout"):
        with_timeout(H4_ECHO_RESPONSE, 10)


def test_patching_refuses_a_bad_crc_instead_of_laundering_it() -> None:
    broken = V2_CRC_REQUEST[:200] + b"\x00" + V2_CRC_REQUEST[201:]
    with pytest.raises(CrcMismatchError, match="refusing"):
        with_request_id(broken, 1)


@pytest.mark.parametrize(
    "data", [HEARTBEAT[:21], HEARTBEAT + b"\x00", HEARTBEAT * 2, HEARTBEAT[:10]]
)
def test_patching_wants_exactly_one_frame(data: bytes) -> None:
    with pytest.raises(LocalProtocolError, match="exactly one"):
        with_request_id(data, 1)


def test_patching_refuses_out_of_range_values() -> None:
    with pytest.raises(LocalProtocolError, match="32-bit"):
        with_request_id(HEARTBEAT, 2**31)
    with pytest.raises(LocalProtocolError, match="32-bit"):
        with_timeout(HEARTBEAT, -(2**31) - 1)


def test_read_request_id_needs_a_whole_fixed_header() -> None:
    assert frame_length(HEARTBEAT[:21]) is None
    with pytest.raises(LocalProtocolError):
        read_request_id(HEARTBEAT[:21])


def test_with_headers_replaces_the_wire_bytes() -> None:
    frame = request(1, b"").with_headers([("a", ""), ("b", None)], keep_nulls=True)
    assert frame.header == b"\x00\x00\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x01b\xff\xff\xff\xff"
    assert decode(encode(frame)).headers() == (("a", ""), ("b", None))
    answer = reply(frame).with_headers({"x": "1"})
    assert answer.headers() == (("x", "1"),)


def test_frames_of_different_kinds_never_compare_equal() -> None:
    assert RequestFrame(1) != ResponseFrame(1)
    assert RequestFrame(1) != tuple(RequestFrame(1))
    assert RequestFrame(1) == RequestFrame(1)
    assert hash(RequestFrame(1)) == hash(RequestFrame(1))
    assert RequestFrame(1).fixed_header().cmd_type == 1
    assert ResponseFrame(1).fixed_header().cmd_type == 0
