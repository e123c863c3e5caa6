"""Golden bytes for every form of the Hessian 2.0 grammar, computed by hand from the
spec and Hessian2Output's choices (tests/.../test_hessian2_interop.py checks the
same forms against Java itself)."""

from __future__ import annotations

import decimal
from datetime import UTC, datetime
from typing import Any

import pytest
from hessian2_support import INT_MAX, INT_MIN, LONG_MAX, LONG_MIN, same

from sofamesh.codecs import hessian2
from sofamesh.codecs.hessian2 import (
    Byte,
    Char,
    Double,
    Encoder,
    Float,
    JavaEnum,
    JavaObject,
    Long,
    Short,
    TypedList,
    TypedMap,
)


def s(text: str) -> str:
    """Hex of a compact string (< 32 ASCII characters)."""
    return f"{len(text):02x}" + text.encode().hex()


A = "61"
ENCODED: list[tuple[Any, str]] = [
    (None, "4e"), (True, "54"), (False, "46"),
    # int ::= [x80-xbf] | [xc0-xcf] b0 | [xd0-xd7] b1 b0 | 'I' b3..b0
    (0, "90"), (-16, "80"), (47, "bf"), (-17, "c7ef"), (48, "c830"), (-2048, "c000"),
    (2047, "cfff"), (-2049, "d3f7ff"), (2048, "d40800"), (-262144, "d00000"),
    (262143, "d7ffff"), (-262145, "49fffbffff"), (262144, "4900040000"),
    (INT_MIN, "4980000000"), (INT_MAX, "497fffffff"),
    # Python ints past 32 bits are Java longs
    (INT_MAX + 1, "4c0000000080000000"), (INT_MIN - 1, "4cffffffff7fffffff"),
    (LONG_MIN, "4c8000000000000000"), (LONG_MAX, "4c7fffffffffffffff"),
    # long ::= [xd8-xef] | [xf0-xff] b0 | [x38-x3f] b1 b0 | x59 b3..b0 | 'L' b7..b0
    (Long(0), "e0"), (Long(-8), "d8"), (Long(15), "ef"), (Long(-9), "f7f7"), (Long(16), "f810"),
    (Long(-2048), "f000"), (Long(2047), "ffff"), (Long(-2049), "3bf7ff"),
    (Long(2048), "3c0800"), (Long(-262144), "380000"), (Long(262143), "3fffff"),
    (Long(-262145), "59fffbffff"), (Long(INT_MAX), "597fffffff"),
    (Long(INT_MAX + 1), "4c0000000080000000"),
    # double ::= x5b | x5c | x5d b0 | x5e b1 b0 | x5f (int thousandths) | 'D' b7..b0
    (0.0, "5b"), (1.0, "5c"), (-128.0, "5d80"), (127.0, "5d7f"), (-129.0, "5eff7f"),
    (128.0, "5e0080"), (-32768.0, "5e8000"), (32767.0, "5e7fff"), (32768.0, "5f01f40000"),
    (12.25, "5f00002fda"), (0.1, "5f00000064"), (-0.001, "5fffffffff"),
    (1e300, "447e37e43c8800759c"), (float("inf"), "447ff0000000000000"),
    (float("nan"), "447ff8000000000000"), (5e-324, "440000000000000001"),
    (-0.0, "448000000000000000"),  # kept; Java's writer would send 0.0
    (Double(2.5), "5f000009c4"), (Float(0.5), "5f000001f4"), (Float(0.1), "443fb99999a0000000"),
    (Short(7), "97"), (Byte(-3), "8d"), (Char("x"), "0178"),
    # string ::= [x00-x1f] | [x30-x33] b0 | 'S' b1 b0 | x52 b1 b0 <chunk> string
    ("", "00"), ("hello", s("hello")), ("a" * 31, "1f" + A * 31), ("a" * 32, "3020" + A * 32),
    ("a" * 1023, "33ff" + A * 1023), ("a" * 1024, "530400" + A * 1024),
    ("a" * 0x8000, "538000" + A * 0x8000), ("a" * 0x8001, "528000" + A * 0x8000 + "01" + A),
    ("é", "01c3a9"), ("中文", "02e4b8ade69687"),
    ("\x00", "0100"), ("\U0001f600", "02eda0bdedb880"), ("\ud800", "01eda080"),
    # a chunk never ends in a high surrogate: 32767 units, then the pair
    ("a" * 0x7FFF + "\U0001f600", "527fff" + A * 0x7FFF + "02eda0bdedb880"),
    # binary ::= [x20-x2f] | [x34-x37] b0 | 'B' b1 b0 | 'A' b1 b0 <chunk> binary
    (b"", "20"), (b"\x07" * 15, "2f" + "07" * 15), (b"\x07" * 16, "3410" + "07" * 16),
    (b"\x07" * 1023, "37ff" + "07" * 1023), (b"\x07" * 1024, "420400" + "07" * 1024),
    (b"\x07" * 8189, "421ffd" + "07" * 8189),
    (b"\x07" * 8190, "411ffd" + "07" * 8189 + "2107"), (bytearray(b"\x01"), "2101"),
    # date ::= x4a b7..b0 (ms) | x4b b3..b0 (whole minutes)
    (datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC), "4a0000018bcfe5687b"),
    (datetime(2023, 11, 14, 22, 13, tzinfo=UTC), "4b01b05515"),
    (datetime(1970, 1, 1, tzinfo=UTC), "4b00000000"),
    # list ::= [x78-x7f] value* | 'X' int value* | [x70-x77] type value* | 'V' type int value*
    ([], "78"), ([1, "two"], "7a91" + s("two")), (list(range(8)), "5898" + "9091929394959697"),
    ((1,), "7991"), (TypedList("[int", [1, 2, 3]), "73" + s("[int") + "919293"),
    (TypedList("[int", range(8)), "56" + s("[int") + "98" + "9091929394959697"),
    (frozenset({"a"}), "71" + s("java.util.HashSet") + s("a")),
    # map ::= 'H' (value value)* 'Z' | 'M' type (value value)* 'Z'
    ({}, "485a"), ({"a": 1, 2: None}, "48" + s("a") + "91924e5a"),
    (TypedMap("java.util.TreeMap", {"a": 1}), "4d" + s("java.util.TreeMap") + s("a") + "915a"),
    # object ::= 'C' string int string* then [x60-x6f] value* | 'O' int value*
    (JavaObject("a.B", {"x": 1}), "43" + s("a.B") + "91" + s("x") + "6091"),
    (JavaEnum("a.E", "RED"), "43" + s("a.E") + "91" + s("name") + "60" + s("RED")),
    (decimal.Decimal("1.50"), "43" + "14" + b"java.math.BigDecimal".hex() + "91" + s("value")
     + "60" + s("1.50")),
]  # fmt: skip


@pytest.mark.parametrize(("value", "hexed"), ENCODED, ids=[f"{i}" for i in range(len(ENCODED))])
def test_encodes_to_java_bytes(value: Any, hexed: str) -> None:
    assert hessian2.dumps(value).hex() == hexed


@pytest.mark.parametrize(("value", "hexed"), ENCODED, ids=[f"{i}" for i in range(len(ENCODED))])
def test_decodes_java_bytes(value: Any, hexed: str) -> None:
    same(value, hessian2.loads(bytes.fromhex(hexed)), handles=False)


def test_java_handles_mode_writes_handle_objects() -> None:
    hexed = hessian2.dumps(Float(0.5), java_handles=True).hex()
    assert (
        hexed
        == "43"
        + "3021"
        + b"com.caucho.hessian.io.FloatHandle".hex()
        + "91"
        + s("_value")
        + "60"
        + "5f000001f4"
    )
    assert type(hessian2.loads(bytes.fromhex(hexed))) is Float
    short = hessian2.loads(hessian2.dumps(Short(-2), java_handles=True))
    assert (type(short), short) == (Short, -2)


# Forms Java never writes but the grammar allows, each with the value it means.
DECODE_ONLY: list[tuple[str, Any]] = [
    ("55" + s("[int") + "91925a", TypedList("[int", [1, 2])),  # variable-length typed list
    ("579192" + "5a", [1, 2]),  # variable-length untyped list
    ("58929192", [1, 2]),  # 'X' with a length that fits the compact form
    ("56" + s("[int") + "929192", TypedList("[int", [1, 2])),
    (
        "7a" + "71" + s("[int") + "91" + "7190" + "92",
        [TypedList("[int", [1]), TypedList("[int", [2])],
    ),
    ("72" + s("a.L") + "78" + "4d90" + "5a", TypedList("a.L", [[], TypedMap("a.L", {})])),
    ("43" + s("a.B") + "90" + "4f90", JavaObject("a.B")),  # 'O' int form
    ("520002" + "6162" + "0163", "abc"),  # chunk, then a compact final chunk
    ("520001" + "61" + "520001" + "62" + "530001" + "63", "abc"),
    ("300161", "a"),  # 2-byte length form for a short string
    ("520001" + "eda0bd" + "01" + "edb880", "\U0001f600"),  # pair split across chunks
    ("02" + "f09f9880", "\U0001f600"),  # 4-byte UTF-8: Java refuses it, we accept it
    ("410002" + "0102" + "2103", b"\x01\x02\x03"),
    ("410001" + "01" + "420001" + "02", b"\x01\x02"),
    ("410001" + "01" + "3402" + "0203", b"\x01\x02\x03"),
    ("420002" + "0102", b"\x01\x02"),
    ("490000000f", 15),  # non-minimal int forms
    ("4c000000000000000f", Long(15)),
    ("59ffffffff", Long(-1)),
    ("4400000000000000" + "00", 0.0),
    ("5fffffff9c", -0.1),
    ("4a0000000000000000", datetime(1970, 1, 1, tzinfo=UTC)),
    ("4bffffffff", datetime(1969, 12, 31, 23, 59, tzinfo=UTC)),
    ("4d" + s("a.M") + "91925a", TypedMap("a.M", {1: 2})),
]


@pytest.mark.parametrize(("hexed", "value"), DECODE_ONLY, ids=[h[:24] for h, _ in DECODE_ONLY])
def test_decodes_every_grammar_form(hexed: str, value: Any) -> None:
    same(value, hessian2.loads(bytes.fromhex(hexed)))


def test_type_names_are_written_once_then_referenced() -> None:
    a, b = TypedList("[int", []), TypedMap("java.util.TreeMap", {})
    data = hessian2.dumps([a, b, TypedList("[int", []), TypedMap("java.util.TreeMap", {})])
    assert data.hex() == (
        "7c" + "70" + s("[int") + "4d" + s("java.util.TreeMap") + "5a" + "7090" + "4d915a"
    )


def test_shared_and_circular_references() -> None:
    shared: dict[str, Any] = {"s": 1}
    assert hessian2.dumps([shared, shared]).hex() == "7a" + "48" + s("s") + "915a" + "5191"
    loop: list[Any] = ["x"]
    loop.append(loop)
    assert hessian2.dumps(loop).hex() == "7a" + s("x") + "5190"
    back = hessian2.loads(hessian2.dumps(loop))
    assert back[1] is back
    pair = hessian2.loads(hessian2.dumps([shared, shared]))
    assert pair[0] is pair[1]


def test_seventeenth_class_uses_the_long_object_form() -> None:
    objs = [JavaObject(f"c.K{i}", {}) for i in range(17)]
    data = hessian2.dumps(objs)
    assert data.endswith(bytes.fromhex("43" + s("c.K16") + "90" + "4fa0"))
    same(objs, hessian2.loads(data))


def test_stream_shares_class_definitions_and_references() -> None:
    enc = Encoder()
    p = JavaObject("com.example.Person", {"name": "alice", "age": 1})
    first = enc.encode(p)
    second = enc.encode(JavaObject("com.example.Person", {"name": "bob", "age": 2}))
    third = enc.encode(p)
    assert first.startswith(b"C")
    assert second.hex() == "60" + s("bob") + "92"
    assert third.hex() == "5190"
    dec = hessian2.Decoder(first + second + third)
    values = [dec.read(), dec.read(), dec.read()]
    assert dec.at_end and dec.offset == len(first + second + third)
    assert values[2] is values[0]
    assert [v["name"] for v in values] == ["alice", "bob", "alice"]
    enc.reset()
    assert enc.encode(p) == first


def test_single_name_field_objects_read_as_enums() -> None:
    # Java's EnumSerializer writes exactly this shape, so the two cannot be told apart.
    person = hessian2.loads(hessian2.dumps(JavaObject("a.P", {"name": "alice"})))
    assert person == JavaEnum("a.P", "alice") and person["name"] == "alice"
    assert person.fields == {"name": "alice"} and person.get("age") is None
    assert hessian2.dumps(person) == hessian2.dumps(JavaObject("a.P", {"name": "alice"}))
    odd = hessian2.loads(hessian2.dumps(JavaObject("a.P", {"name": 5})))
    assert odd == JavaObject("a.P", {"name": 5})


def test_dumps_all_and_loads_all_are_one_stream() -> None:
    p = JavaObject("com.example.Person", {"name": "alice", "age": 1})
    data = hessian2.dumps_all([p, 1, p])
    assert data == hessian2.dumps(p) + bytes.fromhex("915190")
    values = hessian2.loads_all(data)
    assert values[2] is values[0] and values[1] == 1
    assert hessian2.loads_all(b"") == []


# A throwable and an enum exactly as Hessian2Output 4.0.38 on Java 17 writes them
# (IllegalStateException("boom", RuntimeException("inner")) with one stack frame;
# Color.RED, Color.GREEN, Color.RED written into one stream).
JAVA_EXCEPTION = bytes.fromhex(
    "431f6a6176612e6c616e672e496c6c6567616c5374617465457863657074696f6e940d64657461696c4d6573"
    "736167650563617573650a737461636b54726163651473757070726573736564457863657074696f6e7360"
    "04626f6f6d431a6a6176612e6c616e672e52756e74696d65457863657074696f6e940d64657461696c4d65"
    "73736167650563617573650a737461636b54726163651473757070726573736564457863657074696f6e73"
    "6105696e6e65725191701c5b6a6176612e6c616e672e537461636b5472616365456c656d656e74701f6a61"
    "76612e7574696c2e436f6c6c656374696f6e7324456d7074794c6973747190431b6a6176612e6c616e672e"
    "537461636b5472616365456c656d656e74980f636c6173734c6f616465724e616d650a6d6f64756c654e61"
    "6d650d6d6f64756c6556657273696f6e0e6465636c6172696e67436c6173730a6d6574686f644e616d6508"
    "66696c654e616d650a6c696e654e756d62657206666f726d6174624e4e4e09636f6d2e782e466f6f036261"
    "7208466f6f2e6a617661ba905193"
)
JAVA_ENUMS = bytes.fromhex("430947656e24436f6c6f7291046e616d6560035245446005475245454e5190")


def test_java_exception_decodes_to_something_useful() -> None:
    exc = hessian2.loads(JAVA_EXCEPTION)
    assert isinstance(exc, hessian2.JavaException) and isinstance(exc, Exception)
    assert str(exc) == "java.lang.IllegalStateException: boom"
    assert exc.message == "boom"
    assert exc.stack_trace == ["at com.x.Foo.bar(Foo.java:42)"]
    inner = exc.cause
    assert str(inner) == "java.lang.RuntimeException: inner"
    assert inner["cause"] is inner and inner.cause is None  # Java: "no cause" is a self-reference
    assert exc["suppressedExceptions"] is inner["suppressedExceptions"]
    assert list(exc.fields) == ["detailMessage", "cause", "stackTrace", "suppressedExceptions"]
    assert hessian2.dumps(exc) == JAVA_EXCEPTION


def test_java_enums_decode_hashable_and_shared() -> None:
    red, green, red_again = hessian2.loads_all(JAVA_ENUMS)
    assert red == JavaEnum("Gen$Color", "RED") and green.name == "GREEN"
    assert red_again is red and {red: 1}[JavaEnum("Gen$Color", "RED")] == 1
    assert hessian2.dumps_all([red, green, red_again]) == JAVA_ENUMS
