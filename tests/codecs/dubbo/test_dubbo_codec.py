"""The Dubbo codec beyond the captures: every flag and status, every response flag,
heartbeats, limits, errors, other serializations, descriptors, the matcher."""

from __future__ import annotations

import pytest

from sofamesh.codecs import dubbo, hessian2
from sofamesh.codecs.bolt.matcher import Match
from sofamesh.codecs.dubbo import (
    BadMagicError,
    BodyError,
    DubboLimits,
    FrameDecoder,
    FrameTooLargeError,
    LocalProtocolError,
    RequestBody,
    RequestFrame,
    ResponseFlag,
    ResponseFrame,
    Status,
    descriptors,
    encode,
)


def roundtrip(frame: dubbo.Frame) -> dubbo.Frame | None:
    decoder = FrameDecoder()
    decoder.receive_data(encode(frame))
    return decoder.next_frame()


@pytest.mark.parametrize("two_way", [True, False])
@pytest.mark.parametrize("event", [True, False])
@pytest.mark.parametrize("ser", [2, 3, 21, 31])
def test_request_flags(two_way: bool, event: bool, ser: int) -> None:
    frame = RequestFrame(2**64 - 1, b"xyz", ser, two_way, event)
    raw = encode(frame)
    assert raw[2] == 0x80 | (0x40 if two_way else 0) | (0x20 if event else 0) | ser
    assert roundtrip(frame) == frame


@pytest.mark.parametrize("status", list(Status))
def test_every_status(status: Status) -> None:
    frame = ResponseFrame(7, status, dubbo.encode_error("why"), 2, False)
    assert roundtrip(frame) == frame
    assert encode(frame)[3] == status
    assert dubbo.error_message(frame.body) == "why"


def test_heartbeat_and_reply() -> None:
    beat = dubbo.heartbeat(9)
    assert encode(beat) == bytes.fromhex("dabbe2000000000000000009000000014e")
    assert beat.is_heartbeat
    ack = dubbo.heartbeat_reply(beat)
    assert encode(ack) == bytes.fromhex("dabb22140000000000000009000000014e")
    got = roundtrip(ack)
    assert isinstance(got, ResponseFrame) and got.is_heartbeat and got.request_id == 9


@pytest.mark.parametrize("attachments", [None, {"k": "v"}])
@pytest.mark.parametrize(
    ("value", "exception", "flag"),
    [
        ("v", False, ResponseFlag.VALUE),
        (None, False, ResponseFlag.NULL),
        (hessian2.JavaException("java.lang.RuntimeException", {"detailMessage": "boom"}), True,
         ResponseFlag.EXCEPTION),
    ],
)  # fmt: skip
def test_response_flags(
    value: object, exception: bool, flag: ResponseFlag, attachments: dict[str, str] | None
) -> None:
    raw = dubbo.encode_response(value, exception=exception, attachments=attachments)
    body = dubbo.decode_response(raw)
    want = ResponseFlag(flag + 3) if attachments is not None else flag
    assert body.flag is want and body.attachments == attachments
    assert body.is_exception is exception
    if exception:
        assert dubbo.exception_message(body.value) == "java.lang.RuntimeException: boom"
    else:
        assert body.value == value


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x91", hessian2.dumps_all([7, "x"]), hessian2.dumps_all([4, "x", "notmap"]),
     hessian2.dumps_all(["x"]), b"\xff"],
)  # fmt: skip
def test_bad_response_bodies(raw: bytes) -> None:
    with pytest.raises(BodyError):
        dubbo.decode_response(raw)


def test_request_body_roundtrip_and_checks() -> None:
    body = RequestBody(
        path="p.S", method="m", version="1", descriptor="Ljava/lang/String;J[I",
        args=("\U0001f600", 2**40, [1, 2]), attachments={"group": "g"},
    )  # fmt: skip
    assert dubbo.decode_request(dubbo.encode_request(body)) == body
    with pytest.raises(LocalProtocolError):
        RequestBody(path="p", method="m", descriptor="I", args=())
    with pytest.raises(BodyError):
        dubbo.decode_request(hessian2.dumps_all(["2", "p", "", "m", "II", 1]))
    with pytest.raises(BodyError):
        dubbo.decode_request(b"\xff\xff")


def test_head_needs_the_plain_forms() -> None:
    raw = dubbo.encode_request(RequestBody(path="p", method="m", descriptor="I", args=(1,)))
    head = dubbo.peek_head(raw)
    assert head is not None and head[1:5] == ("p", "", "m", "I")
    assert dubbo.peek_head(hessian2.dumps_all(["2", "p\u00e9", "", "m", ""])) is None
    assert dubbo.peek_head(raw[:4]) is None
    assert dubbo.peek_head(hessian2.dumps_all(["2", 5, "", "m", ""])) is None


def test_bad_magic_is_fatal_and_sticks() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\xda\xbc" + bytes(14))
    for _ in range(2):
        with pytest.raises(BadMagicError) as info:
            decoder.next_frame()
        assert info.value.fatal


def test_body_limit_carries_the_header() -> None:
    decoder = FrameDecoder(DubboLimits(max_body_size=10))
    decoder.receive_data(encode(RequestFrame(5, b"x" * 11)))
    with pytest.raises(FrameTooLargeError) as info:
        decoder.next_frame()
    assert info.value.header is not None and info.value.header.request_id == 5
    ok = FrameDecoder(DubboLimits(max_body_size=10))
    ok.receive_data(encode(RequestFrame(5, b"x" * 10)))
    assert ok.next_frame() == RequestFrame(5, b"x" * 10)


def test_encode_refuses_what_dubbo_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError):
        encode(RequestFrame(-1, b""))
    with pytest.raises(LocalProtocolError):
        encode(ResponseFrame(1, 256, b""))
    with pytest.raises(LocalProtocolError):
        encode(RequestFrame(1, b"", 32))


def test_matcher() -> None:
    assert dubbo.match(b"") is Match.NEED_MORE
    assert dubbo.match(b"\xda") is Match.NEED_MORE
    assert dubbo.match(b"\xda\xbb") is Match.NEED_MORE
    assert dubbo.match(b"\xda\xbb\xc2") is Match.YES
    assert dubbo.match(b"\xda\xbb\x02") is Match.NO  # a response: no caller sends one first
    assert dubbo.match(b"GET /") is Match.NO
    assert dubbo.match(b"\xda\xbc\xc2") is Match.NO


@pytest.mark.parametrize(
    ("desc", "parts"),
    [("", []), ("II", ["I", "I"]), ("Ljava/lang/String;[[J", ["Ljava/lang/String;", "[[J"])],
)
def test_descriptors(desc: str, parts: list[str]) -> None:
    assert descriptors.parse(desc) == parts


@pytest.mark.parametrize("bad", ["Lx", "[", "Q", "V"])
def test_bad_descriptors(bad: str) -> None:
    with pytest.raises(ValueError):
        descriptors.parse(bad)


def test_descriptor_names_and_inference() -> None:
    assert descriptors.java_name("[Ljava/lang/String;") == "java.lang.String[]"
    assert descriptors.of_java_name("long[]") == "[J"
    assert descriptors.of_java_name("java.util.Map") == "Ljava/util/Map;"
    got = [descriptors.descriptor_of(v) for v in (1, 2**40, "s", 1.5, True, {}, [], None)]
    assert got == [
        "I", "J", "Ljava/lang/String;", "D", "Ljava/lang/Boolean;", "Ljava/util/Map;",
        "Ljava/util/List;", "Ljava/lang/Object;",
    ]  # fmt: skip
    assert descriptors.descriptor_of(hessian2.Long(1)) == "J"
    with pytest.raises(LocalProtocolError):
        descriptors.descriptor_of(object())
