"""The codec's events: named tuples built positionally, equal only to an event of their own type."""

from __future__ import annotations

import pytest

from sofamesh.codecs.h2 import DataReceived, SettingsChanged, WindowOpened
from sofamesh.codecs.h2.differential import fold


def test_an_event_built_by_position_equals_one_built_by_keyword() -> None:
    assert DataReceived(1, b"x", 1, True) == DataReceived(
        stream_id=1, data=b"x", flow_length=1, end_stream=True
    )
    assert DataReceived(1, b"x", 1, True) != DataReceived(1, b"x", 1, False)


def test_events_of_different_types_with_equal_fields_differ() -> None:
    """Both are `(0,)` as tuples; the differential judge must still tell them apart."""
    assert WindowOpened(0) != SettingsChanged(0)
    assert not WindowOpened(0) == SettingsChanged(0)  # noqa: SIM201 - `__eq__` itself
    assert WindowOpened(0) != (0,)
    assert len({WindowOpened(0), SettingsChanged(0), WindowOpened(0)}) == 2
    # fold drops SettingsChanged(None) and a repeated WindowOpened(0), nothing else
    assert fold([SettingsChanged(0), WindowOpened(0)]) == [SettingsChanged(0), WindowOpened(0)]


def test_an_event_is_immutable() -> None:
    event = WindowOpened(3)
    with pytest.raises(AttributeError):
        event.stream_id = 4  # type: ignore[misc]
