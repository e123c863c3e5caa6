"""Hessian 2.0 serialization, byte-compatible with com.caucho's Hessian2Output/Hessian2Input.

A json-like surface for single values, and `Encoder`/`Decoder` for streams of
values that share class definitions and references (a SOFARPC request body is
the request object followed by each argument, in one stream):

    >>> from sofamesh.codecs import hessian2
    >>> hessian2.loads(hessian2.dumps({"n": 1, "tags": ["a", "b"]}))
    {'n': 1, 'tags': ['a', 'b']}

Python <-> Java mapping, limits and examples: docs/protocols/hessian2.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sofamesh.codecs.hessian2.classes import ClassBinding, ClassRegistry
from sofamesh.codecs.hessian2.decoder import Decoder
from sofamesh.codecs.hessian2.encoder import Encoder
from sofamesh.codecs.hessian2.errors import (
    Hessian2DecodeError,
    Hessian2EncodeError,
    Hessian2Error,
)
from sofamesh.codecs.hessian2.limits import DEFAULT_LIMITS, Hessian2Limits
from sofamesh.codecs.hessian2.types import (
    Byte,
    Char,
    Double,
    Float,
    Int,
    JavaEnum,
    JavaException,
    JavaObject,
    Long,
    Short,
    TypedList,
    TypedMap,
)

__all__ = [
    "DEFAULT_LIMITS",
    "Byte",
    "Char",
    "ClassBinding",
    "ClassRegistry",
    "Decoder",
    "Double",
    "Encoder",
    "Float",
    "Hessian2DecodeError",
    "Hessian2EncodeError",
    "Hessian2Error",
    "Hessian2Limits",
    "Int",
    "JavaEnum",
    "JavaException",
    "JavaObject",
    "Long",
    "Short",
    "TypedList",
    "TypedMap",
    "dumps",
    "dumps_all",
    "loads",
    "loads_all",
]


def dumps(
    value: Any,
    *,
    registry: ClassRegistry | None = None,
    limits: Hessian2Limits = DEFAULT_LIMITS,
    java_handles: bool = False,
) -> bytes:
    """Encode one value as a complete Hessian 2.0 stream."""
    return Encoder(registry=registry, limits=limits, java_handles=java_handles).encode(value)


def dumps_all(
    values: Iterable[Any],
    *,
    registry: ClassRegistry | None = None,
    limits: Hessian2Limits = DEFAULT_LIMITS,
    java_handles: bool = False,
) -> bytes:
    """Encode several values into one stream (shared class definitions and references)."""
    return Encoder(registry=registry, limits=limits, java_handles=java_handles).encode_all(values)


def loads(
    data: bytes | bytearray | memoryview,
    *,
    registry: ClassRegistry | None = None,
    limits: Hessian2Limits = DEFAULT_LIMITS,
) -> Any:
    """Decode exactly one value; trailing bytes are an error."""
    decoder = Decoder(data, registry=registry, limits=limits)
    value = decoder.read()
    if not decoder.at_end:
        raise Hessian2DecodeError("trailing bytes after the value", decoder.offset)
    return value


def loads_all(
    data: bytes | bytearray | memoryview,
    *,
    registry: ClassRegistry | None = None,
    limits: Hessian2Limits = DEFAULT_LIMITS,
) -> list[Any]:
    """Decode every value of a stream (an empty input gives an empty list)."""
    return Decoder(data, registry=registry, limits=limits).read_all()
