"""BoltLimits validates itself."""

from __future__ import annotations

import pytest

from sofamesh.codecs.bolt import DEFAULT_LIMITS, BoltLimits


def test_defaults() -> None:
    assert DEFAULT_LIMITS.max_body_size == 8 * 1024 * 1024
    assert DEFAULT_LIMITS.max_header_size == 0x7FFF
    assert DEFAULT_LIMITS.max_frame_size == 24 + 1024 + 0x7FFF + 8 * 1024 * 1024 + 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_body_size": -1},
        {"max_body_size": 2**31},
        {"max_header_size": 0x8000},
        {"max_class_name_size": 0x8000},
        {"max_header_entries": -1},
        {"max_body_size": 1.5},
    ],
)
def test_out_of_range_limits_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        BoltLimits(**kwargs)  # type: ignore[arg-type]


def test_limits_are_frozen_and_keyword_only() -> None:
    limits = BoltLimits(max_body_size=10)
    with pytest.raises(AttributeError):
        limits.max_body_size = 11  # type: ignore[misc]
    with pytest.raises(TypeError):
        BoltLimits(10)  # type: ignore[misc]
