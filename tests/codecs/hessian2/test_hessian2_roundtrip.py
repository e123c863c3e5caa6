"""Python -> bytes -> Python is exact for every type of the mapping (hypothesis)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hessian2_support import REGISTRY, graphs, same, texts, values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sofamesh.codecs import hessian2
from sofamesh.codecs.hessian2 import Decoder, Encoder, Hessian2EncodeError, TypedList
from sofamesh.codecs.hessian2.text import java_chunks, units_end

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(values())
def test_round_trip_is_exact(value: Any) -> None:
    same(value, hessian2.loads(hessian2.dumps(value, registry=REGISTRY), registry=REGISTRY),
         handles=False)  # fmt: skip


@SETTINGS
@given(values())
def test_round_trip_with_java_handles_keeps_float_short_byte(value: Any) -> None:
    data = hessian2.dumps(value, registry=REGISTRY, java_handles=True)
    same(value, hessian2.loads(data, registry=REGISTRY), handles=True)


@SETTINGS
@given(graphs())
def test_shared_and_circular_graphs_round_trip(graph: list[Any]) -> None:
    same(graph, hessian2.loads(hessian2.dumps(graph, registry=REGISTRY), registry=REGISTRY),
         handles=False)  # fmt: skip


@SETTINGS
@given(graphs())
def test_graphs_with_java_handles_round_trip(graph: list[Any]) -> None:
    data = hessian2.dumps(graph, registry=REGISTRY, java_handles=True)
    same(graph, hessian2.loads(data, registry=REGISTRY), handles=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values(), max_size=5))
def test_streams_round_trip_value_by_value(items: list[Any]) -> None:
    enc = Encoder(registry=REGISTRY)
    data = b"".join(enc.encode(v) for v in items)
    dec = Decoder(data, registry=REGISTRY)
    back = [dec.read() for _ in items]
    assert dec.at_end
    same(items, back, handles=False)


@SETTINGS
@given(values())
def test_decoded_values_re_encode_to_the_same_bytes(value: Any) -> None:
    data = hessian2.dumps(value, registry=REGISTRY, java_handles=True)
    back = hessian2.loads(data, registry=REGISTRY)
    assert hessian2.dumps(back, registry=REGISTRY, java_handles=True) == data


@settings(max_examples=200, deadline=None)
@given(texts(), st.binary(max_size=8))
def test_string_units_end_where_java_would_stop(text: str, tail: bytes) -> None:
    chunks = java_chunks(text)
    assert sum(u for u, _ in chunks) == len(text.encode("utf-16-le")) // 2
    assert all(u <= 0x8000 for u, _ in chunks)
    for units, raw in chunks:
        data = b"\x00" + raw + tail
        assert units_end(data, 1, units, len(data)) == 1 + len(raw)
        assert units_end(data, 1, units, len(raw)) == -1  # one byte short
    assert hessian2.loads(hessian2.dumps(text)) == text


def test_lone_surrogates_survive_but_adjacent_ones_pair_up() -> None:
    for text in ["\ud800", "a\udfffb", "\udc00\ud800", "x" * 40000 + "\ud83d"]:
        assert hessian2.loads(hessian2.dumps(text)) == text
    # Java's UTF-16 cannot tell a lone pair from a character: they come back joined.
    assert hessian2.loads(hessian2.dumps("\ud83d\ude00")) == "\U0001f600"


def test_python_only_containers_map_to_java_ones() -> None:
    assert hessian2.loads(hessian2.dumps((1, 2))) == [1, 2]
    as_set = hessian2.loads(hessian2.dumps({"a"}))
    assert as_set == TypedList("java.util.HashSet", ["a"])
    assert hessian2.loads(hessian2.dumps(memoryview(b"ab"))) == b"ab"
    assert hessian2.loads(hessian2.dumps(memoryview(b"abcd")[::2])) == b"ac"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1 << 64, "does not fit in a Java long"),
        (datetime(2020, 1, 1), "naive datetime"),
        (object(), "cannot encode object"),
        (hessian2.types.Long, "cannot encode type"),
        (__import__("decimal").Decimal("NaN"), "BigDecimal has no NaN"),
    ],
)
def test_values_without_a_hessian_form_raise_encode_error(value: Any, message: str) -> None:
    with pytest.raises(Hessian2EncodeError, match=message):
        hessian2.dumps(value)


def test_class_and_field_names_of_any_length() -> None:
    obj = hessian2.JavaObject("c" * 40_000, {"f" * 33_000: 1, "\U0001f600": 2})
    data = hessian2.dumps(obj)
    assert hessian2.loads(data) == obj and hessian2.dumps(hessian2.loads(data)) == data
    for bad in (hessian2.JavaObject("", {}), hessian2.JavaObject("a.B", {1: 2})):
        with pytest.raises(Hessian2EncodeError, match="non-empty str"):
            hessian2.dumps(bad)


def test_failed_encode_leaves_the_stream_as_it_was() -> None:
    enc = Encoder()
    shared = ["s"]
    first = enc.encode([shared])
    with pytest.raises(Hessian2EncodeError):
        enc.encode([["new"], hessian2.JavaObject("a.B", {"x": object()})])
    # the failed value's list, class and ref were forgotten: numbering continues from `first`
    data = first + enc.encode([shared, ["new"], hessian2.JavaObject("a.B", {"x": 1})])
    back = hessian2.loads_all(data)
    assert back[1][0] is back[0][0]
    assert back[1][1] == ["new"] and back[1][2]["x"] == 1


def test_encoder_depth_limit() -> None:
    nested: list[Any] = []
    for _ in range(30):
        nested = [nested]
    limits = hessian2.Hessian2Limits(max_depth=10)
    with pytest.raises(Hessian2EncodeError, match="max_depth=10"):
        hessian2.dumps(nested, limits=limits)
    assert hessian2.loads(hessian2.dumps(nested)) == nested
