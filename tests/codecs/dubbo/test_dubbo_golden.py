"""Golden vectors: the captured frames decode field by field, their bodies read as
Dubbo's layout says, and everything re-encodes to the same bytes."""

from __future__ import annotations

import pytest
from dubbo_vectors import ADD_REQUEST, ADD_RESPONSE, SAY_HELLO_REQUEST, SAY_HELLO_RESPONSE

from sofamesh.codecs import dubbo
from sofamesh.codecs.dubbo import (
    FrameDecoder,
    RequestFrame,
    ResponseFlag,
    ResponseFrame,
    Status,
    decode_request,
    decode_response,
    encode,
    encode_request,
    encode_response,
    peek_head,
)

ATTACHMENTS = {
    "dubbo": "5.3.0",
    "group": "",
    "path": "com.example.DemoService",
    "service": "com.example.DemoService:1.0.0",
    "version": "1.0.0",
}


def decode_one(raw: bytes) -> dubbo.Frame:
    decoder = FrameDecoder()
    decoder.receive_data(raw)
    frame = decoder.next_frame()
    assert frame is not None and decoder.next_frame() is None and decoder.buffered == 0
    return frame


def test_say_hello_request_fields() -> None:
    frame = decode_one(SAY_HELLO_REQUEST)
    assert frame == RequestFrame(1, SAY_HELLO_REQUEST[16:], 2, True, False)
    body = decode_request(frame.body)
    assert (body.dubbo_version, body.path, body.version, body.method) == (
        "5.3.0", "com.example.DemoService", "1.0.0", "sayHello",
    )  # fmt: skip
    assert body.descriptor == "Ljava/lang/String;"
    assert body.args == ("world",)
    assert body.attachments == ATTACHMENTS


def test_add_request_fields_and_head() -> None:
    frame = decode_one(ADD_REQUEST)
    assert isinstance(frame, RequestFrame) and frame.request_id == 2
    head = peek_head(frame.body)
    assert head is not None
    assert head[:5] == ("5.3.0", "com.example.DemoService", "1.0.0", "add", "II")
    assert frame.body[head.end : head.end + 2] == b"\x92\x93"  # the arguments start here
    assert dubbo.attachments_of(frame.body, head) == (ATTACHMENTS, 45)
    assert decode_request(frame.body).args == (2, 3)


@pytest.mark.parametrize(
    ("raw", "rid", "value"), [(SAY_HELLO_RESPONSE, 1, "Hello world"), (ADD_RESPONSE, 2, 5)]
)
def test_responses(raw: bytes, rid: int, value: object) -> None:
    frame = decode_one(raw)
    assert frame == ResponseFrame(rid, Status.OK, raw[16:], 2, False)
    body = decode_response(frame.body)
    assert (body.flag, body.value, body.attachments) == (ResponseFlag.VALUE, value, None)
    assert encode_response(value) == frame.body


@pytest.mark.parametrize("raw", [SAY_HELLO_REQUEST, ADD_REQUEST, SAY_HELLO_RESPONSE, ADD_RESPONSE])
def test_reencode_is_identical(raw: bytes) -> None:
    frame = decode_one(raw)
    assert encode(frame) == raw
    if isinstance(frame, RequestFrame):
        assert encode_request(decode_request(frame.body)) == frame.body


@pytest.mark.parametrize("cut", range(1, len(SAY_HELLO_REQUEST)))
def test_split_anywhere(cut: int) -> None:
    raw = SAY_HELLO_REQUEST + ADD_RESPONSE
    decoder = FrameDecoder()
    decoder.receive_data(raw[:cut])
    got = list(decoder)
    decoder.receive_data(raw[cut:])
    got += list(decoder)
    assert got == [decode_one(SAY_HELLO_REQUEST), decode_one(ADD_RESPONSE)]
