"""Truncated, malformed and hostile input only ever raises Hessian2DecodeError, quickly,
without deep recursion and without allocating from a length the bytes do not back."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
from hessian2_support import REGISTRY, same, values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sofamesh.codecs import hessian2
from sofamesh.codecs.hessian2 import Decoder, Hessian2DecodeError, Hessian2Limits

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_reject(data: bytes, **kwargs: Any) -> None:
    """Decoding either fails cleanly or gives values that re-encode and read back the same."""
    try:
        values = hessian2.loads_all(data, registry=REGISTRY, **kwargs)
    except Hessian2DecodeError as exc:
        assert 0 <= exc.offset <= len(data)
        return
    again = hessian2.dumps_all(values, registry=REGISTRY, java_handles=True)
    same(values, hessian2.loads_all(again, registry=REGISTRY), handles=True)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_decode_errors(data: bytes) -> None:
    decode_or_reject(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(hessian2.dumps(draw(values()), registry=REGISTRY))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if action == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif action == "delete" and data:
            del data[pos]
        elif action == "cut":
            del data[pos:]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_encodings_only_raise_decode_errors(data: bytes) -> None:
    decode_or_reject(data)


@settings(max_examples=40, deadline=None)
@given(values())
def test_every_truncation_is_an_error(value: Any) -> None:
    data = hessian2.dumps(value, registry=REGISTRY)
    step = max(1, len(data) // 64)  # long encodings: a sample of cut points
    for cut in range(0, len(data), step):
        with pytest.raises(Hessian2DecodeError):
            hessian2.loads(data[:cut], registry=REGISTRY)


# Headers that promise far more than the input holds.
LIARS = [
    "58" + "497fffffff",  # untyped list of 2**31-1 items
    "56" + "045b696e74" + "497fffffff",  # typed list of 2**31-1 items
    "53ffff" + "61",  # string of 65535 units
    "52ffff" + "61",  # string chunk of 65535 units
    "42ffff" + "00",  # binary of 65535 bytes
    "41ffff" + "00",  # binary chunk
    "43" + "0161" + "497fffffff",  # class definition with 2**31-1 fields
    "58" + "49ffffffff",  # negative length
]


@pytest.mark.parametrize("hexed", LIARS)
def test_lengths_are_not_trusted_before_the_bytes_exist(hexed: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(Hessian2DecodeError):
            hessian2.loads(bytes.fromhex(hexed))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000


@pytest.mark.parametrize(
    ("hexed", "message", "offset"),
    [
        ("9140", "trailing bytes", 1),
        ("7a9140", "unknown tag 0x40", 2),
        ("5a", "unexpected end marker", 0),
        ("7a91", "input ends inside", 2),
        ("5190", "back-reference 0 out of range", 2),
        ("6091", "object of undefined class 0", 1),
        ("7091", "type reference 1 out of range", 2),
        ("7100", "empty type name", 2),
        ("71" + "4e", "expected an int, found tag 0x4e", 1),
        ("43" + "91", "expected a string, found tag 0x91", 1),
        ("43" + "00" + "90" + "60", "empty class or field name", 3),
        ("43" + "0161" + "91" + "00" + "6090", "empty class or field name", 5),
        ("018061", "invalid UTF-8", 3),
        ("02c08061", "invalid UTF-8", 4),
        ("520001" + "61" + "91", "expected a string chunk, found tag 0x91", 4),
        ("410001" + "61" + "91", "expected a binary chunk, found tag 0x91", 4),
        ("01" + "f09f9880", "inside a surrogate pair", 1),
        ("48" + "78" + "91" + "5a", "map key of type list is unhashable", 3),
        ("4a7fffffffffffffff", "outside Python's datetime range", 9),
        (
            "43" + "14" + b"java.math.BigDecimal".hex() + "91" + "0576616c7565" + "60" + "03616263",
            "BigDecimal value 'abc'",
            34,
        ),
        (
            "43" + "14" + b"java.math.BigDecimal".hex() + "91" + "0576616c7565" + "60" + "5190",
            "back-reference 0 to an object still being read",
            32,
        ),
        (
            "43"
            + "3021"
            + b"com.caucho.hessian.io.ShortHandle".hex()
            + "91"
            + "065f76616c7565"
            + "60"
            + "4900010000",
            "out of range",
            50,
        ),
        (
            "43" + "11" + b"com.example.Color".hex() + "91" + "046e616d65" + "60" + "03424c55",
            "has no constant 'BLU'",
            30,
        ),
    ],
)
def test_errors_say_what_and_where(hexed: str, message: str, offset: int) -> None:
    with pytest.raises(Hessian2DecodeError, match=message) as info:
        hessian2.loads(bytes.fromhex(hexed), registry=REGISTRY)
    assert info.value.offset == offset


def test_deep_nesting_stops_at_max_depth_without_recursion_errors() -> None:
    deep = bytes.fromhex("79" * 100_000 + "4e")
    with pytest.raises(Hessian2DecodeError, match="max_depth=200"):
        hessian2.loads(deep)
    with pytest.raises(Hessian2DecodeError, match=r"max_depth|too deep"):
        hessian2.loads(deep, limits=Hessian2Limits(max_depth=1_000_000))
    ok = bytes.fromhex("79" * 50 + "4e")
    assert hessian2.loads(ok, limits=Hessian2Limits(max_depth=50)) is not None


def test_runs_of_class_definitions_do_not_recurse() -> None:
    one = bytes.fromhex("43" + "0161" + "90")
    data = one * 50_000 + bytes.fromhex("60")
    assert hessian2.loads(data) == hessian2.JavaObject("a")


@pytest.mark.parametrize(
    ("limits", "data", "message"),
    [
        (Hessian2Limits(max_size=10), bytes(11), "exceeds max_size"),
        (Hessian2Limits(max_string=1024), bytes.fromhex("530401") + b"a" * 1025, "max_string"),
        (
            Hessian2Limits(max_string=1024),
            bytes.fromhex("520400") + b"a" * 1024 + b"\x01a",
            "max_string",
        ),
        (Hessian2Limits(max_binary=1024), bytes.fromhex("420401") + bytes(1025), "max_binary"),
        (Hessian2Limits(max_items=8), bytes.fromhex("5899") + bytes(9), "over the limit 8"),
        (Hessian2Limits(max_items=8), bytes.fromhex("57" + "90" * 9 + "5a"), "max_items=8"),
        (
            Hessian2Limits(max_items=8),
            bytes.fromhex("48" + "".join(f"{0x90 + i:02x}90" for i in range(9)) + "5a"),
            "max_items=8",
        ),
        (Hessian2Limits(max_objects=3), bytes.fromhex("7c" + "78" * 4), "max_objects=3 lists"),
        (
            Hessian2Limits(max_objects=2),
            bytes.fromhex("430161" + "90") * 3 + bytes.fromhex("60"),
            "max_objects=2 classes",
        ),
    ],
)
def test_configured_limits_are_enforced(limits: Hessian2Limits, data: bytes, message: str) -> None:
    with pytest.raises(Hessian2DecodeError, match=message):
        hessian2.loads(data, limits=limits)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_depth": 0}, {"max_string": 100}, {"max_binary": 10}, {"max_items": 2}, {"max_size": -1}],
)
def test_limits_refuse_values_that_would_disable_compact_forms(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be an int"):
        Hessian2Limits(**kwargs)


def test_decoder_refuses_to_continue_after_an_error() -> None:
    dec = Decoder(bytes.fromhex("91" + "40" + "92"))
    assert dec.read() == 1
    with pytest.raises(Hessian2DecodeError, match="unknown tag"):
        dec.read()
    with pytest.raises(Hessian2DecodeError, match="already failed"):
        dec.read()
    with pytest.raises(Hessian2DecodeError, match="no more values"):
        Decoder(b"").read()


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("53ffff") + b"\x80" * 70_000,  # a string of continuation bytes
        bytes.fromhex("53ffff") + "中".encode() * 21_845,  # one byte short of its length
        bytes.fromhex("57") * 100 + bytes.fromhex("5a") * 100,
        bytes.fromhex("4d" + "0161") + bytes.fromhex("4d90") * 199 + bytes.fromhex("5a") * 200,
    ],
)
def test_pathological_inputs_finish_fast(data: bytes) -> None:
    start = time.perf_counter()
    decode_or_reject(data)
    assert time.perf_counter() - start < 1.0
