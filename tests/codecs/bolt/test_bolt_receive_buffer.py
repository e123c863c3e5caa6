"""ReceiveBuffer: a FIFO of received chunks, checked against a plain bytes model."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.bolt import FrameDecoder, RequestFrame, encode
from sofamesh.codecs.bolt.receive_buffer import ReceiveBuffer

sizes = st.sampled_from([0, 1, 3, 100, 16383, 16384, 20000])
ops = st.lists(
    st.tuples(st.sampled_from(["append", "take", "skip", "peek"]), sizes, st.integers(0, 255)),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_behaves_like_one_bytes_string(script: list[tuple[str, int, int]]) -> None:
    buf, model = ReceiveBuffer(), b""
    for op, size, fill in script:
        if op == "append":
            data = bytes([fill]) * size + bytes([fill ^ 1])
            buf.append(data if fill % 2 else bytearray(data))
            model += data
        elif op == "peek":
            assert buf.peek(size) == model[:size]
        else:
            n = min(size, len(model))
            if op == "take":
                assert buf.take(n) == model[:n]
            else:
                buf.skip(n)
            model = model[n:]
        assert len(buf) == buf.size == len(model)
        first, pos = buf.first()
        assert model.startswith(first[pos:]) and (not model or first[pos:])


def test_a_whole_chunk_is_taken_without_copying() -> None:
    buf = ReceiveBuffer()
    head, body = b"h" * 30, b"b" * 70000
    buf.append(head)
    buf.append(body)
    assert buf.take(30) == head
    assert buf.take(70000) is body


def test_whole_chunk_body_reaches_the_frame_uncopied() -> None:
    frame = RequestFrame(1, body=b"z" * 100000, class_name=b"C")
    data = encode(frame)
    decoder = FrameDecoder()
    decoder.receive_data(data[:-100000])
    body = data[-100000:]
    decoder.receive_data(body)
    decoded = decoder.next_frame()
    assert decoded == frame
    assert decoded is not None and decoded.body is body


def test_one_byte_at_a_time_costs_about_a_byte_per_byte() -> None:
    buf = ReceiveBuffer()
    tracemalloc.start()
    try:
        for _ in range(200_000):
            buf.append(b"x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(buf) == 200_000
    assert peak < 2 * 200_000, peak  # one object per byte would be ~33 bytes per byte
    assert buf.take(200_000) == b"x" * 200_000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 70000), min_size=1, max_size=3),
    st.lists(st.sampled_from([1, 7, 100, 16383, 16384, 40000, 65536]), max_size=12),
)
def test_large_frames_in_any_chunks(bodies: list[int], chunks: list[int]) -> None:
    frames = [RequestFrame(i, body=bytes([i]) * n, class_name=b"C") for i, n in enumerate(bodies)]
    data = b"".join(encode(f) for f in frames)
    decoder, got, pos = FrameDecoder(), [], 0
    for size in [*chunks, len(data)]:
        decoder.receive_data(data[pos : pos + size])
        pos += size
        got.extend(decoder)
    assert got == frames
    assert decoder.buffered == 0
