"""`Options`: the per-process settings governance takes that are not rules.

Apart from `kind.py` because a sidecar names them at start, with no rules
document yet, and `kind.py` (with the keyed state helpers it imports) loads with
the first document (docs/performance.md, "Idle RSS on trio").
"""

from __future__ import annotations

from collections.abc import Callable

import attrs


@attrs.frozen
class Options:
    """Per-process settings that are not rules: randomness (pinned in tests), the local zone."""

    rand: Callable[[], float] | None = None
    local_zone: str = ""
    max_keys: int = 10_000  # bound on per-method / per-caller / per-call-key caches
