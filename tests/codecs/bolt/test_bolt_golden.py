"""Golden vectors: frames captured from sofa-rpc-node decode field by field and
re-encode to the same bytes; splitting them anywhere changes nothing."""

from __future__ import annotations

import zlib

import pytest
from bolt_vectors import H3_FAIL_RESPONSE_PREFIX, VECTORS, Vector

from sofamesh.codecs.bolt import (
    FrameDecoder,
    RequestFrame,
    ResponseFrame,
    ResponseStatus,
    encode,
    frame_length,
    read_request_id,
)
from sofamesh.codecs.bolt.frames import Frame

ids = [v.name for v in VECTORS]


def decode_one(raw: bytes) -> Frame:
    decoder = FrameDecoder()
    decoder.receive_data(raw)
    frame = decoder.next_frame()
    assert frame is not None
    assert decoder.buffered == 0
    assert decoder.next_frame() is None
    return frame


@pytest.mark.parametrize("vec", VECTORS, ids=ids)
def test_every_field_matches_the_capture(vec: Vector) -> None:
    frame = decode_one(vec.raw)
    assert frame.kind is vec.kind
    assert frame.request_id == vec.request_id
    assert (frame.version, frame.ver1, frame.switch, frame.ver2) == (
        vec.version, vec.ver1, vec.switch, 1,
    )  # fmt: skip
    assert frame.codec == 1
    assert frame.class_name == vec.class_name
    assert frame.header == vec.raw[slice(*vec.header_span)]
    assert frame.headers() == vec.headers
    assert frame.body == vec.raw[slice(*vec.body_span)]
    assert frame.has_crc is (vec.crc is not None)


@pytest.mark.parametrize("vec", VECTORS, ids=ids)
def test_timeout_or_status_matches_the_capture(vec: Vector) -> None:
    frame = decode_one(vec.raw)
    if vec.timeout_ms is not None:
        assert isinstance(frame, RequestFrame)
        assert frame.timeout_ms == vec.timeout_ms
        assert frame.oneway is False
    else:
        assert isinstance(frame, ResponseFrame)
        assert frame.status == vec.status
        assert isinstance(frame.status, ResponseStatus)


@pytest.mark.parametrize("vec", [v for v in VECTORS if v.crc is not None], ids=lambda v: v.name)
def test_crc_trailer_is_crc32_of_every_preceding_byte(vec: Vector) -> None:
    assert vec.crc is not None
    assert vec.raw[-4:] == vec.crc.to_bytes(4, "big")
    assert zlib.crc32(vec.raw[:-4]) == vec.crc
    assert vec.body_span[1] == len(vec.raw) - 4


@pytest.mark.parametrize("vec", VECTORS, ids=ids)
def test_reencoding_gives_the_captured_bytes(vec: Vector) -> None:
    assert encode(decode_one(vec.raw)) == vec.raw


@pytest.mark.parametrize("vec", VECTORS, ids=ids)
def test_length_and_id_can_be_read_from_the_fixed_header(vec: Vector) -> None:
    assert frame_length(vec.raw[:24]) == len(vec.raw)
    assert read_request_id(vec.raw[:24]) == vec.request_id


@pytest.mark.parametrize("vec", VECTORS, ids=ids)
def test_byte_by_byte(vec: Vector) -> None:
    decoder = FrameDecoder()
    for i in range(len(vec.raw) - 1):
        decoder.receive_data(vec.raw[i : i + 1])
        assert decoder.next_frame() is None
    decoder.receive_data(vec.raw[-1:])
    assert decoder.next_frame() == decode_one(vec.raw)
    assert decoder.buffered == 0


@pytest.mark.parametrize("vec", VECTORS, ids=ids)
def test_every_split_point(vec: Vector) -> None:
    whole = decode_one(vec.raw)
    for cut in range(1, len(vec.raw)):
        decoder = FrameDecoder()
        decoder.receive_data(vec.raw[:cut])
        assert decoder.next_frame() is None
        decoder.receive_data(bytearray(vec.raw[cut:]))
        assert list(decoder) == [whole]


def test_every_vector_back_to_back_in_one_buffer_and_in_odd_chunks() -> None:
    stream = b"".join(v.raw for v in VECTORS) * 3
    expected = [decode_one(v.raw) for v in VECTORS] * 3
    decoder = FrameDecoder()
    decoder.receive_data(stream)
    assert list(decoder) == expected
    decoder = FrameDecoder()
    got: list[Frame] = []
    for i in range(0, len(stream), 97):
        decoder.receive_data(memoryview(stream)[i : i + 97])
        got.extend(decoder)
    assert got == expected
    assert decoder.buffered == 0


def test_truncated_hessian3_fail_response_header_reads_but_waits_for_the_rest() -> None:
    # frames.txt shows 196 bytes of this 1215-byte SERVER_EXCEPTION response.
    assert frame_length(H3_FAIL_RESPONSE_PREFIX) == 1215
    decoder = FrameDecoder()
    decoder.receive_data(H3_FAIL_RESPONSE_PREFIX)
    assert decoder.next_frame() is None
    assert decoder.buffered == 196
