"""Property tests: any frame round-trips however the bytes are split; arbitrary bytes
give frames or a `RemoteProtocolError`, never another exception; the head reader agrees
with the full decoder whenever it answers."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from sofamesh.codecs import dubbo, hessian2
from sofamesh.codecs.dubbo import FrameDecoder, RequestFrame, ResponseFrame, encode

ids = st.integers(0, 2**64 - 1)
bodies = st.binary(max_size=64)
requests = st.builds(RequestFrame, ids, bodies, st.integers(0, 31), st.booleans(), st.booleans())
responses = st.builds(ResponseFrame, ids, st.integers(0, 255), bodies, st.integers(0, 31),
                      st.booleans())  # fmt: skip


@given(st.lists(requests | responses, max_size=5), st.lists(st.integers(1, 40), max_size=8))
def test_frames_survive_any_split(frames: list[dubbo.Frame], cuts: list[int]) -> None:
    raw = b"".join(encode(f) for f in frames)
    decoder = FrameDecoder()
    got: list[dubbo.Frame] = []
    pos = 0
    for size in [*cuts, len(raw)]:
        decoder.receive_data(raw[pos : pos + size])
        pos += size
        got += list(decoder)
    assert got == frames


@given(st.binary(max_size=200))
def test_garbage_never_crashes(raw: bytes) -> None:
    decoder = FrameDecoder(dubbo.DubboLimits(max_body_size=100))
    decoder.receive_data(raw)
    with contextlib.suppress(dubbo.RemoteProtocolError):
        list(decoder)


text = st.text(max_size=20)


@given(text, text, text, st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4), st.binary())
def test_head_agrees_with_full_decode(
    path: str, version: str, method: str, args: list[int], junk: bytes
) -> None:
    body = dubbo.RequestBody(
        path=path, version=version, method=method, descriptor="I" * len(args),
        args=tuple(args), attachments={"group": "g"},
    )  # fmt: skip
    raw = dubbo.encode_request(body)
    head = dubbo.peek_head(raw)
    if head is not None:
        assert head[1:5] == (path, version, method, body.descriptor)
        attachments, start = dubbo.attachments_of(raw, head)
        assert attachments == {"group": "g"}
        assert hessian2.loads(raw[start:]) == attachments
    assert dubbo.decode_request(raw) == body
    for bad in (junk, raw[: len(raw) // 2] + junk):
        with contextlib.suppress(dubbo.BodyError):
            dubbo.decode_request(bad)
        with contextlib.suppress(dubbo.BodyError):
            dubbo.decode_response(bad)
    assert hessian2.loads_all(raw)[1] == path


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=40), st.integers(32760, 33000).map(lambda n: "a" * n),  # chunked
)  # fmt: skip
attachment_maps = st.dictionaries(st.text(max_size=8), st.text(max_size=8) | st.integers(0, 99),
                                  max_size=4)  # fmt: skip


@given(st.lists(scalars, max_size=4), attachment_maps)
def test_the_fast_attachment_reader_agrees_with_the_decoder(
    args: list[object], attachments: dict[str, object]
) -> None:
    desc = "Ljava/lang/Object;" * len(args)
    body = dubbo.RequestBody(path="p", method="m", descriptor=desc, args=tuple(args),
                             attachments=attachments)  # fmt: skip
    raw = dubbo.encode_request(body)
    head = dubbo.peek_head(raw)
    assert head is not None
    found, start = dubbo.attachments_of(raw, head)
    assert found == attachments
    assert hessian2.loads_all(raw[head.end : start]) == args
