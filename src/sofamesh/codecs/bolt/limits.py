"""Size limits the Bolt decoder enforces before it buffers a frame's bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from sofamesh.codecs.bolt.headers import DEFAULT_MAX_HEADER_ENTRIES
from sofamesh.codecs.bolt.wire import CRC_SIZE, MAX_INT_LENGTH, MAX_SHORT_LENGTH, V2_REQUEST


def _within(high: int) -> Callable[[Any, Any, int], Any]:
    return attrs.validators.and_(
        attrs.validators.instance_of(int), attrs.validators.ge(0), attrs.validators.le(high)
    )


@attrs.frozen(kw_only=True)
class BoltLimits:
    """Per-connection decoding limits; a frame over any of them closes the connection.

    Defaults: 8 MiB of content, SOFARPC's default `transport.payload.max`; the header
    map and class name may use the whole signed 16-bit length the wire allows for the
    header map, and 1 KiB for the class name (SOFARPC's are under 50 bytes).
    """

    max_body_size: int = attrs.field(default=8 * 1024 * 1024, validator=_within(MAX_INT_LENGTH))
    max_header_size: int = attrs.field(
        default=MAX_SHORT_LENGTH, validator=_within(MAX_SHORT_LENGTH)
    )
    max_header_entries: int = attrs.field(
        default=DEFAULT_MAX_HEADER_ENTRIES, validator=_within(MAX_SHORT_LENGTH)
    )
    max_class_name_size: int = attrs.field(default=1024, validator=_within(MAX_SHORT_LENGTH))

    @property
    def max_frame_size(self) -> int:
        """The largest frame these limits admit, fixed header and CRC included."""
        return (
            V2_REQUEST.size
            + self.max_class_name_size
            + self.max_header_size
            + self.max_body_size
            + CRC_SIZE
        )


DEFAULT_LIMITS = BoltLimits()
