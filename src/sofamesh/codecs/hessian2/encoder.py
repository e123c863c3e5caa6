"""Hessian 2.0 encoder: Python values in, the bytes com.caucho's Hessian2Output writes out.

Every choice of form follows Hessian2Output 4.0.38, so a value that came from
Java re-encodes to the bytes Java wrote (tests check this on Java's own
vectors), with two deliberate exceptions that Java's reader accepts:

- -0.0 is written as a full double; Java's writer turns it into 0.0.
- Binaries are chunked at 8189 bytes. Java's chunk size depends on how full
  its 8 KiB output buffer happens to be, so it matches only at the start of a
  buffer; any chunking is valid (spec 3.1).

Values go through a dict from exact type to writer function (no isinstance
chains on the hot path); other classes are resolved once per encoder through
the `ClassRegistry` and cached. Lists, maps and objects are remembered by
identity, so shared and circular structures are written as back-references
(spec 3.9), as Java does.
"""

from __future__ import annotations

import decimal
import enum
import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from operator import attrgetter
from typing import Any

from sofamesh.codecs.hessian2 import objects
from sofamesh.codecs.hessian2.classes import ClassBinding, ClassRegistry
from sofamesh.codecs.hessian2.encode_scalars import (
    write_bool,
    write_bytes,
    write_date,
    write_double,
    write_int,
    write_long,
    write_memoryview,
    write_none,
    write_str,
)
from sofamesh.codecs.hessian2.errors import Hessian2EncodeError
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

Writer = Callable[["Encoder", Any], None]
Piece = bytes | bytearray | memoryview


class Encoder:
    """Writes consecutive values of one Hessian 2.0 stream.

    `encode(value)` returns the bytes of the next value. Class definitions,
    type names and back-references carry over between calls, as in one
    Hessian2Output: SOFARPC writes `encode(request)` then `encode(arg)` for
    each argument into one body. A failed `encode` leaves the stream state as
    it was before the call. `java_handles=True` writes `Float`, `Short` and
    `Byte` as Java's writeObject does (com.caucho.hessian.io.*Handle objects);
    by default they are written as plain double/int, which Java also accepts
    into primitive `float`/`short`/`byte` fields, where handles fail.

    The writers of `encode_scalars.py` and of the containers below write through
    `buf` (the current bytes), `spill` (big pieces), `seen` (back references),
    `write_type`, `write_each`, `write_pairs` and `write_object`: the encoder's
    interface for its own writers, public so that no module reaches into another's.
    """

    __slots__ = (
        "_classes",
        "_depth",
        "_extra",
        "_handles",
        "_keep",
        "_max_depth",
        "_parts",
        "_refs",
        "_registry",
        "_types",
        "buf",
    )  # fmt: skip

    def __init__(
        self,
        *,
        registry: ClassRegistry | None = None,
        limits: Hessian2Limits = DEFAULT_LIMITS,
        java_handles: bool = False,
    ) -> None:
        self.buf = bytearray()
        self._parts: list[Piece] = []  # big pieces, joined once instead of copied
        self._refs: dict[int, int] = {}
        self._keep: list[Any] = []  # referenced objects stay alive, so their ids stay unique
        self._classes: dict[tuple[str, tuple[str, ...]], int] = {}
        self._types: dict[str, int] = {}
        self._depth = 0
        self._max_depth = limits.max_depth
        self._registry = registry
        self._handles = java_handles
        self._extra: dict[type, Writer] = {}

    def encode(self, value: Any) -> bytes:
        """The bytes of `value` as the next value of this stream."""
        marks = (len(self._refs), len(self._classes), len(self._types))
        self.buf = buf = bytearray()
        parts: list[Piece] = []
        self._parts = parts
        try:
            self._write(value)
        except BaseException as exc:
            self._rollback(*marks)
            if isinstance(exc, RecursionError):
                raise Hessian2EncodeError("value nested too deeply for Python") from None
            raise
        finally:
            self._parts = []
        if parts:
            parts.append(buf)
            return b"".join(parts)
        return bytes(buf)

    def encode_all(self, values: Iterable[Any]) -> bytes:
        """The bytes of several consecutive values."""
        return b"".join([self.encode(v) for v in values])

    def reset(self) -> None:
        """Forget class definitions, types and references: start a new stream."""
        self._rollback(0, 0, 0)

    def _rollback(self, refs: int, classes: int, types: int) -> None:
        self._depth = 0
        for table, keep in ((self._refs, refs), (self._classes, classes), (self._types, types)):
            while len(table) > keep:
                table.popitem()
        del self._keep[refs:]

    # ---------------------------------------------------------------- dispatch
    def _write(self, value: Any) -> None:
        cls = type(value)
        writer = _WRITERS.get(cls) or self._extra.get(cls) or self._resolve(cls)
        writer(self, value)

    def write_each(self, values: Iterable[Any]) -> None:
        self._depth += 1
        if self._depth > self._max_depth:
            raise Hessian2EncodeError(f"value nested deeper than max_depth={self._max_depth}")
        writers, extra = _WRITERS, self._extra
        for value in values:
            cls = type(value)
            (writers.get(cls) or extra.get(cls) or self._resolve(cls))(self, value)
        self._depth -= 1

    def write_pairs(self, mapping: dict[Any, Any]) -> None:
        self._depth += 1
        if self._depth > self._max_depth:
            raise Hessian2EncodeError(f"value nested deeper than max_depth={self._max_depth}")
        writers, extra = _WRITERS, self._extra
        for key, value in mapping.items():
            cls = type(key)
            (writers.get(cls) or extra.get(cls) or self._resolve(cls))(self, key)
            cls = type(value)
            (writers.get(cls) or extra.get(cls) or self._resolve(cls))(self, value)
        self._depth -= 1

    def _resolve(self, cls: type) -> Writer:
        binding = self._registry.by_type(cls) if self._registry is not None else None
        if binding is not None:
            writer = _enum_writer(binding) if binding.is_enum else _record_writer(binding)
        elif issubclass(cls, enum.Enum):
            raise Hessian2EncodeError(f"enum {cls.__qualname__} is not registered with a Java name")
        else:
            found = next((_WRITERS[b] for b in cls.__mro__[1:] if b in _WRITERS), None)
            if found is None:
                raise Hessian2EncodeError(
                    f"cannot encode {cls.__qualname__}: not a Hessian type and not registered"
                )
            writer = found
        self._extra[cls] = writer
        return writer

    def spill(self, pieces: list[Piece]) -> None:
        """Append large pieces by reference; `encode` joins them with one copy."""
        buf = self.buf
        self._parts.append(bytes(buf))
        buf.clear()  # the same bytearray: writers holding it keep appending after the pieces
        self._parts.extend(pieces)

    def seen(self, value: Any) -> bool:
        """Write a back-reference if `value` was written before; else remember it."""
        index = self._refs.get(id(value))
        if index is not None:
            self.buf.append(0x51)
            write_int(self, index)
            return True
        self._refs[id(value)] = len(self._refs)
        self._keep.append(value)
        return False

    def write_type(self, name: str) -> None:
        """A type name, or the index of its first use in this stream (Hessian2Output.writeType)."""
        index = self._types.get(name)
        if index is None:
            self._types[name] = len(self._types)
            write_str(self, name)
        else:
            write_int(self, index)

    def write_object(self, name: str, fields: tuple[str, ...], values: Iterable[Any]) -> None:
        index = self._classes.get((name, fields))
        buf = self.buf
        if index is None:
            index = self._classes[(name, fields)] = len(self._classes)
            buf += _class_def(name, fields)
        if index <= 0x0F:
            buf.append(0x60 + index)
        else:
            buf.append(0x4F)
            write_int(self, index)
        self.write_each(values)


# -------------------------------------------------------------------- lists and maps
def _write_list(enc: Encoder, value: Any) -> None:
    if enc.seen(value):
        return
    size = len(value)
    if size <= 7:
        enc.buf.append(0x78 + size)
    else:
        enc.buf.append(0x58)
        write_int(enc, size)
    enc.write_each(value)


def _write_typed_list(enc: Encoder, value: Any, java_type: str | None = None) -> None:
    if enc.seen(value):
        return
    size = len(value)
    if size <= 7:
        enc.buf.append(0x70 + size)
        enc.write_type(java_type or value.java_type)
    else:
        enc.buf.append(0x56)
        enc.write_type(java_type or value.java_type)
        write_int(enc, size)
    enc.write_each(value)


def _write_set(enc: Encoder, value: Any) -> None:
    _write_typed_list(enc, value, "java.util.HashSet")


def _write_dict(enc: Encoder, value: Any) -> None:
    if enc.seen(value):
        return
    enc.buf.append(0x48)
    enc.write_pairs(value)
    enc.buf.append(0x5A)


def _write_typed_map(enc: Encoder, value: Any) -> None:
    if enc.seen(value):
        return
    enc.buf.append(0x4D)
    enc.write_type(value.java_type)
    enc.write_pairs(value)
    enc.buf.append(0x5A)


# -------------------------------------------------------------------- objects
@functools.lru_cache(maxsize=4096)
def _class_def(name: str, fields: tuple[str, ...]) -> bytes:
    """'C' name field-count field-names (spec 3.6); plain strings, never type references."""
    if not all(isinstance(text, str) and text for text in (name, *fields)):
        raise Hessian2EncodeError(f"class and field names must be non-empty str: {name!r}")
    scratch = Encoder()  # strings and ints carry no stream state
    return b"C" + scratch.encode_all([name, len(fields), *fields])


def _write_java_object(enc: Encoder, value: Any) -> None:
    if not enc.seen(value):
        enc.write_object(value.class_name, tuple(value.fields), value.fields.values())


def _write_java_enum(enc: Encoder, value: Any) -> None:
    if not enc.seen(value):
        enc.write_object(value.class_name, ("name",), (value.name,))


def _write_decimal(enc: Encoder, value: Any) -> None:
    if not value.is_finite():
        raise Hessian2EncodeError(f"BigDecimal has no {value}")
    if not enc.seen(value):
        enc.write_object(objects.BIG_DECIMAL, ("value",), (str(value),))


def _handle_writer(name: str, plain: Writer) -> Writer:
    convert: Callable[[Any], Any] = float if plain is write_double else int

    def write(enc: Encoder, value: Any) -> None:
        if enc._handles:
            # Java's writer numbers every object it writes, each handle too (a
            # fresh object, never referenced again); readers count it as well.
            enc._refs[-1 - len(enc._refs)] = len(enc._refs)
            enc._keep.append(None)
            enc.write_object(name, ("_value",), (convert(value),))
        else:
            plain(enc, value)

    return write


def _enum_writer(binding: ClassBinding) -> Writer:
    def write(enc: Encoder, value: Any) -> None:
        if not enc.seen(value):
            enc.write_object(binding.java_name, ("name",), (value.name,))

    return write


def _record_writer(binding: ClassBinding) -> Writer:
    fields = binding.fields
    get: Callable[[Any], Any]
    if len(fields) > 1:
        get = attrgetter(*fields)
    else:
        getters = [attrgetter(f) for f in fields]

        def get(obj: Any) -> Any:
            return [g(obj) for g in getters]

    def write(enc: Encoder, value: Any) -> None:
        if not enc.seen(value):
            enc.write_object(binding.java_name, fields, get(value))

    return write


_WRITERS: dict[type, Writer] = {
    type(None): write_none, bool: write_bool, int: write_int, Int: write_int,
    Long: write_long, float: write_double, Double: write_double, str: write_str,
    Char: write_str, bytes: write_bytes, bytearray: write_bytes,
    memoryview: write_memoryview, datetime: write_date, list: _write_list,
    tuple: _write_list, TypedList: _write_typed_list, set: _write_set, frozenset: _write_set,
    dict: _write_dict, TypedMap: _write_typed_map, JavaObject: _write_java_object,
    JavaException: _write_java_object, JavaEnum: _write_java_enum,
    decimal.Decimal: _write_decimal,
    Float: _handle_writer(objects.FLOAT_HANDLE, write_double),
    Short: _handle_writer(objects.SHORT_HANDLE, write_int),
    Byte: _handle_writer(objects.BYTE_HANDLE, write_int),
}  # fmt: skip
