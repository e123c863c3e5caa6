"""RequestIds: 31-bit positive ids that wrap and skip ids still in flight."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.bolt import RequestIds, RequestIdsExhaustedError
from sofamesh.codecs.bolt.request_ids import MAX_REQUEST_ID


def test_ids_count_up_from_one_and_map_to_their_values() -> None:
    ids: RequestIds[str] = RequestIds()
    assert [ids.allocate(s) for s in "abc"] == [1, 2, 3]
    assert (len(ids), 2 in ids, ids.get(2)) == (3, True, "b")
    assert ids.pop(2) == "b"
    assert ids.pop(2) is None  # a late or duplicate response
    assert 2 not in ids and len(ids) == 2


def test_wraps_at_the_top_of_the_31_bit_range_and_skips_ids_in_flight() -> None:
    ids: RequestIds[int] = RequestIds(first=MAX_REQUEST_ID - 1)
    assert ids.allocate(0) == MAX_REQUEST_ID - 1
    assert ids.allocate(0) == MAX_REQUEST_ID
    assert ids.allocate(0) == 1
    small: RequestIds[int] = RequestIds(max_id=4)
    assert [small.allocate(i) for i in range(4)] == [1, 2, 3, 4]
    small.pop(2)
    assert small.allocate(9) == 2  # 1 is still in flight, so it wrapped past it


def test_exhaustion_and_drain() -> None:
    ids: RequestIds[str] = RequestIds(max_id=2)
    ids.allocate("a")
    ids.allocate("b")
    with pytest.raises(RequestIdsExhaustedError, match="all 2"):
        ids.allocate("c")
    assert sorted(ids.drain()) == [(1, "a"), (2, "b")]
    assert len(ids) == 0
    assert ids.allocate("d") == 1


@pytest.mark.parametrize(("first", "max_id"), [(0, 10), (11, 10), (1, 0)])
def test_bad_ranges(first: int, max_id: int) -> None:
    with pytest.raises(ValueError):
        RequestIds(first=first, max_id=max_id)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.booleans() | st.integers(0, 10), max_size=80))
def test_ids_are_unique_among_calls_in_flight(ops: list[bool | int]) -> None:
    ids: RequestIds[int] = RequestIds(max_id=8)
    model: dict[int, int] = {}
    for n, op in enumerate(ops):
        if op is True or (op is False and not model):
            if len(model) == 8:
                with pytest.raises(RequestIdsExhaustedError):
                    ids.allocate(n)
                continue
            rid = ids.allocate(n)
            assert 1 <= rid <= 8 and rid not in model
            model[rid] = n
        elif op is False:
            rid = next(iter(model))
            assert ids.pop(rid) == model.pop(rid)
        else:
            assert ids.pop(op) == model.pop(op, None)
        assert len(ids) == len(model)
