"""Property tests: round trips, arbitrary chunking, and hostile bytes.

Hostile input may only ever raise `BoltProtocolError` subclasses; decoding always
stops; whatever the decoder accepts re-encodes to exactly the bytes it consumed; and
a length announced by the peer is never allocated before the bytes arrive.
"""

from __future__ import annotations

import tracemalloc

from bolt_vectors import VECTORS
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.bolt import (
    BoltLimits,
    BoltProtocolError,
    FrameDecoder,
    Match,
    RequestFrame,
    ResponseFrame,
    encode,
    encode_header_map,
    match,
)
from sofamesh.codecs.bolt.frames import Frame

i32 = st.integers(-(2**31), 2**31 - 1)
byte = st.integers(0, 255)
header_maps = st.lists(
    st.tuples(st.text(max_size=8), st.none() | st.text(max_size=12)), max_size=4
).map(lambda items: encode_header_map(items, keep_nulls=True))
versions = st.sampled_from([(1, 1, 0)]) | st.tuples(st.just(2), st.sampled_from([1, 2]), byte)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    version, ver1, switch = draw(versions)
    common = {
        "request_id": draw(i32),
        "body": draw(st.binary(max_size=200)),
        "class_name": draw(st.binary(max_size=50)),
        "header": draw(header_maps),
        "codec": draw(byte),
        "version": version,
        "ver1": ver1,
        "switch": switch,
        "ver2": draw(byte),
    }
    if draw(st.booleans()):
        return RequestFrame(
            timeout_ms=draw(i32),
            oneway=draw(st.booleans()),
            cmd_code=draw(st.sampled_from([0, 1])),
            **common,
        )
    return ResponseFrame(
        status=draw(st.integers(0, 0xFFFF)), cmd_code=draw(st.sampled_from([0, 2])), **common
    )


def decode_all(data: bytes, chunks: list[int] | None = None) -> list[Frame]:
    decoder = FrameDecoder()
    out: list[Frame] = []
    pos = 0
    for size in [*(chunks or []), len(data)]:
        decoder.receive_data(data[pos : pos + size])
        pos += size
        out.extend(decoder)
    assert decoder.buffered == 0
    return out


@settings(max_examples=300, deadline=None)
@given(frames())
def test_round_trip(frame: Frame) -> None:
    data = encode(frame)
    assert decode_all(data) == [frame]
    assert match(data) is Match.YES


@settings(max_examples=150, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=6), st.lists(st.integers(0, 120), max_size=20))
def test_any_chunking_gives_the_same_frames(batch: list[Frame], chunks: list[int]) -> None:
    data = b"".join(encode(f) for f in batch)
    assert decode_all(data, chunks) == batch


def drain(data: bytes, limits: BoltLimits | None = None) -> list[Frame]:
    """Decode hostile bytes, checking every frame re-encodes to the bytes it used."""
    decoder = FrameDecoder(limits) if limits else FrameDecoder()
    decoder.receive_data(data)
    decoder.receive_eof()
    frames_out: list[Frame] = []
    for _ in range(len(data) + 2):  # every call consumes bytes, returns None, or fails
        start = len(data) - decoder.buffered
        try:
            frame = decoder.next_frame()
        except BoltProtocolError as exc:
            if exc.fatal:
                try:
                    decoder.next_frame()
                except BoltProtocolError as again:
                    assert again is exc
                return frames_out
            assert len(data) - decoder.buffered > start  # the bad frame was skipped
            continue
        if frame is None:
            assert decoder.buffered == 0
            return frames_out
        assert encode(frame) == data[start : len(data) - decoder.buffered]
        frames_out.append(frame)
    raise AssertionError("the decoder did not stop")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_bolt_errors(data: bytes) -> None:
    drain(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60))
def test_random_bytes_after_a_bolt_prefix(tail: bytes) -> None:
    for prefix in (b"\x01\x01\x00\x01", b"\x01\x00\x00\x02", b"\x02\x02\x01\x00\x01"):
        drain(prefix + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(encode(f) for f in draw(st.lists(frames(), max_size=3))))
    data += draw(st.sampled_from(VECTORS)).raw
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        if not data:
            break
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_mutated_frames_decode_exactly_or_raise_bolt_errors(data: bytes) -> None:
    drain(data, BoltLimits(max_body_size=4096, max_header_entries=3))


def test_announced_lengths_are_not_allocated_before_the_bytes_arrive() -> None:
    limits = BoltLimits(max_body_size=2**31 - 1)
    head = bytes.fromhex("0101000101000000010100000bb8000000007fffffff")
    decoder = FrameDecoder(limits)
    tracemalloc.start()
    try:
        decoder.receive_data(head)
        for _ in range(64):
            assert decoder.next_frame() is None
            decoder.receive_data(b"\x00" * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.buffered == 22 + 64 * 1024
    assert peak < 1024 * 1024, peak


def outcomes(data: bytes, step: int, limits: BoltLimits) -> list[object]:
    """Every frame and error decoding `data` gives when it arrives `step` bytes at a time."""
    decoder = FrameDecoder(limits)
    out: list[object] = []
    for at in [*range(0, len(data), step), -1]:
        if at < 0:
            decoder.receive_eof()
        else:
            decoder.receive_data(data[at : at + step])
        while True:
            try:
                frame = decoder.next_frame()
            except BoltProtocolError as exc:
                out.append((type(exc), str(exc), exc.fatal, exc.header))
                if exc.fatal:
                    return out
                continue
            if frame is None:
                break
            out.append(frame)
    return out


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_whole_frames_in_one_chunk_decode_as_frames_spread_over_many(data: bytes) -> None:
    """A v1 frame whole in one chunk takes the decoder's one-pass path; byte by byte,
    every frame spans chunks and takes the general one: the two agree on every frame
    and every error."""
    limits = BoltLimits(max_body_size=4096, max_header_entries=3)
    assert outcomes(data, len(data) or 1, limits) == outcomes(data, 1, limits)
