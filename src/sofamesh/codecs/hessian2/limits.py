"""Limits that keep a hostile or broken stream from costing more than it should.

Every length in Hessian comes from the sender. The decoder never allocates
from one before the bytes it promises are present (a list of n items needs at
least n more bytes), and these limits cap what a well-formed stream may ask
for. The compact forms (strings and binaries under 1024, lists under 8) are
always allowed, so the minimums below keep the limits meaningful.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


def _at_least(minimum: int) -> Callable[[Any, attrs.Attribute[int], int], None]:
    def check(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{attribute.name} must be an int >= {minimum}, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class Hessian2Limits:
    """Decoder (and, for `max_depth`, encoder) limits. Defaults suit RPC payloads.

    - `max_size`: bytes in one input buffer.
    - `max_depth`: nesting of lists, maps and objects.
    - `max_string`: UTF-16 units in one string, summed over its chunks.
    - `max_binary`: bytes in one binary, summed over its chunks.
    - `max_items`: items in one list, entries in one map, fields in one class.
    - `max_objects`: lists, maps and objects in one stream (and, counted apart,
      class definitions). Each costs far more memory than its one or two bytes
      of input, so this bounds what a stream of empty lists can cost.
    """

    max_size: int = attrs.field(default=64 << 20, validator=_at_least(1))
    max_depth: int = attrs.field(default=200, validator=_at_least(1))
    max_string: int = attrs.field(default=16 << 20, validator=_at_least(1024))
    max_binary: int = attrs.field(default=64 << 20, validator=_at_least(1024))
    max_items: int = attrs.field(default=1 << 20, validator=_at_least(8))
    max_objects: int = attrs.field(default=4 << 20, validator=_at_least(1))


DEFAULT_LIMITS = Hessian2Limits()
