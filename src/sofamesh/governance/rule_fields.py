"""Field types and helpers shared by the sections of the rules document (`rules.py`)."""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import attrs

Direction = Literal["inbound", "outbound"]
StatusName = Literal[
    "ok",
    "app_error",
    "no_endpoint",
    "connect_failed",
    "upstream_reset",
    "timeout",
    "bad_request",
    "rate_limited",
    "circuit_open",
    "overloaded",
    "unauthorized",
    "unavailable",
    "internal",
]
RetryOn = Literal["connect_failure", "reset", "timeout", "app_error", "gateway_error"]
EACH_METHOD = "*"
T = TypeVar("T")


class StrMap(tuple[tuple[str, str], ...]):
    """A mapping of strings written as a YAML mapping, kept as sorted pairs (hashable)."""

    @classmethod
    def parse(cls, value: Any) -> StrMap:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {type(value).__name__}")
        bad = [
            k
            for k, v in value.items()
            if not isinstance(v, str | int | float) or isinstance(v, bool)
        ]
        if bad:
            raise ValueError(f"values must be strings, not for {', '.join(map(str, bad))}")
        return cls(sorted((str(k), str(v)) for k, v in value.items()))


class HeaderPresence(tuple[tuple[str, str | None], ...]):
    """Header name -> required value, or null for "present with any value" (lowercase names)."""

    @classmethod
    def parse(cls, value: Any) -> HeaderPresence:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {type(value).__name__}")
        return cls(
            sorted((str(k).lower(), None if v is None else str(v)) for k, v in value.items())
        )


class CountMap(tuple[tuple[str, int], ...]):
    """Parameter value -> threshold (hot parameter overrides)."""

    @classmethod
    def parse(cls, value: Any) -> CountMap:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {type(value).__name__}")
        for k, v in value.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"override for {k!r} must be an integer >= 0, got {v!r}")
        return cls(sorted((str(k), int(v)) for k, v in value.items()))


def build_config(target: type[T], spec: object, **converted: Any) -> T:
    """A state machine's config from the rule fields of the same names, plus `converted` ones."""
    names = {f.name for f in attrs.fields(target)} - converted.keys()  # type: ignore[arg-type]
    return target(**{n: getattr(spec, n) for n in names if hasattr(spec, n)}, **converted)


def lowercase(value: str) -> str:
    return value.lower()


def named_service(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
    if not value:
        raise ValueError("must name a service")


def valid_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"invalid regex {pattern!r}: {e}") from None
