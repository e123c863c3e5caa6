"""A registration's fields read as the types they must be (sans-IO).

Registry clients send JSON (or Eureka's XML) whose values a hostile or broken
client may give any type: a port that is an object, metadata that is a list,
a lease that is `1e999`. Each reader here takes the raw value and returns the
type the API needs, or raises `BadField` (a `ValueError`, answered 400) naming
the field. `None` is "absent" and gets the default.
"""

from __future__ import annotations

import math
from typing import Any

MAX_LABELS = 64  # metadata entries of one registration
MAX_TEXT = 1024  # characters of one label key or value


class BadField(ValueError):
    """A field of the wrong type or out of range."""


def text(value: Any, name: str, default: str = "") -> str:
    """A scalar as text (numbers as written); objects and lists are refused."""
    if value is None:
        return default
    if isinstance(value, dict | list):
        raise BadField(f"{name} must be a string, got {type(value).__name__}")
    return str(value)


def number(value: Any, name: str, default: float) -> float:
    """A finite number, or a string of one (XML and forms carry only strings)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadField(f"{name} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except (ValueError, OverflowError):
        raise BadField(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(out):
        raise BadField(f"{name} must be finite, got {str(value)[:40]!r}")
    return out


def port(value: Any, name: str = "port") -> int:
    """A TCP port, 0 to 65535, from a number or a string of digits (0 when absent)."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip()[:6])
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise BadField(f"{name} must be a port number (0-65535), got {str(value)[:40]!r}")
    return value


def mapping(value: Any, name: str) -> dict[str, Any]:
    """An object (`{}` when absent)."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise BadField(f"{name} must be an object, got {type(value).__name__}")
    return value


def labels(value: Any, name: str) -> dict[str, str]:
    """Metadata: an object of at most `MAX_LABELS` scalar values, each as text."""
    raw = mapping(value, name)
    if len(raw) > MAX_LABELS:
        raise BadField(f"{name} has {len(raw)} entries, above the limit of {MAX_LABELS}")
    out = {str(k)[:MAX_TEXT]: text(v, f"{name}.{k}") for k, v in raw.items()}
    if any(len(v) > MAX_TEXT for v in out.values()):
        raise BadField(f"a value of {name} is longer than {MAX_TEXT} characters")
    return out


def strings(value: Any, name: str) -> list[str]:
    """A list of scalars as text (`[]` when absent)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadField(f"{name} must be a list, got {type(value).__name__}")
    return [text(v, f"{name}[]") for v in value]
