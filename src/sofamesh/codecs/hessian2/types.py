"""Python types for Java values that have no exact Python counterpart.

Java distinguishes `int` from `long` (and `short`, `byte`, `float`, `char`);
Python has one `int` and one `float`. The wrappers below are subclasses of
the Python type, so they behave as ordinary numbers and strings, but they tell
the encoder which Java type to write. The decoder returns `Long` for every
Hessian long, so a decoded value re-encodes to the same bytes.

Containers and objects whose Java class matters (typed lists such as `[int`,
typed maps such as `java.util.TreeMap`, objects of classes nobody registered)
decode into `TypedList`, `TypedMap`, `JavaObject`, `JavaEnum` or
`JavaException`, which keep the Java names and field order so that they
re-encode identically.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_F32 = struct.Struct(">f")


def _checked(cls: type, value: int, bits: int) -> None:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= value <= high:
        raise OverflowError(f"{cls.__name__} must be in [{low}, {high}], got {value}")


class Int(int):
    """A Java `int` (32-bit signed). Plain `int`s in this range are written as int anyway."""

    __slots__ = ()

    def __new__(cls, value: Any = 0) -> Int:
        self = super().__new__(cls, value)
        _checked(cls, self, 32)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class Long(int):
    """A Java `long` (64-bit signed): written as a Hessian long even when small."""

    __slots__ = ()

    def __new__(cls, value: Any = 0) -> Long:
        self = super().__new__(cls, value)
        _checked(cls, self, 64)
        return self

    __repr__ = Int.__repr__


class Short(int):
    """A Java `short` (16-bit signed); Hessian has no short, so it travels as an int."""

    __slots__ = ()

    def __new__(cls, value: Any = 0) -> Short:
        self = super().__new__(cls, value)
        _checked(cls, self, 16)
        return self

    __repr__ = Int.__repr__


class Byte(int):
    """A Java `byte` (8-bit signed); Hessian has no byte, so it travels as an int."""

    __slots__ = ()

    def __new__(cls, value: Any = 0) -> Byte:
        self = super().__new__(cls, value)
        _checked(cls, self, 8)
        return self

    __repr__ = Int.__repr__


def to_float32(value: float) -> float:
    """Round to the nearest Java `float`, as Java's `(float)` cast does (overflow: infinity)."""
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:  # the C cast produced an infinity; struct refuses to return it
        return float("inf") if value > 0 else float("-inf")


class Float(float):
    """A Java `float`. The value is rounded to 32-bit precision on construction."""

    __slots__ = ()

    def __new__(cls, value: Any = 0.0) -> Float:
        return super().__new__(cls, to_float32(float(value)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({float(self)!r})"


class Double(float):
    """A Java `double`. Identical to a plain `float`; here for symmetry with `Float`."""

    __slots__ = ()

    __repr__ = Float.__repr__


class Char(str):
    """A Java `char`: one UTF-16 unit, written as a one-character string (as Java does)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Char:
        if len(value) != 1 or ord(value) > 0xFFFF:
            raise ValueError(f"a Java char is one UTF-16 unit, got {value!r}")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"Char({str(self)!r})"


class TypedList(list[Any]):
    """A Hessian typed list: a Java array (`[int`, `[string`, `[java.lang.String`) or a
    collection class (`java.util.LinkedList`, `java.util.HashSet`).

    Compares equal to a list with the same items unless both sides are
    `TypedList`s of different types.
    """

    __slots__ = ("java_type",)

    def __init__(self, java_type: str, items: Iterable[Any] = ()) -> None:
        if not java_type:
            raise ValueError("a typed list needs a non-empty Java type")
        super().__init__(items)
        self.java_type = java_type

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypedList) and other.java_type != self.java_type:
            return False
        return list.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        return f"TypedList({self.java_type!r}, {list.__repr__(self)})"


class TypedMap(dict[Any, Any]):
    """A Hessian typed map, such as `java.util.TreeMap` or `java.util.LinkedHashMap`."""

    __slots__ = ("java_type",)

    def __init__(self, java_type: str, items: Mapping[Any, Any] | Iterable[Any] = ()) -> None:
        if not java_type:
            raise ValueError("a typed map needs a non-empty Java type")
        super().__init__(items)
        self.java_type = java_type

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypedMap) and other.java_type != self.java_type:
            return False
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        return f"TypedMap({self.java_type!r}, {dict.__repr__(self)})"


class JavaObject:
    """An object of a Java class that no Python class is registered for.

    `fields` keeps the field order of the stream, so the object re-encodes to the
    same class definition. Fields read as `obj["name"]` or `obj.fields["name"]`.
    """

    __slots__ = ("class_name", "fields")

    def __init__(self, class_name: str, fields: Mapping[str, Any] | None = None) -> None:
        self.class_name = class_name
        self.fields: dict[str, Any] = dict(fields) if fields else {}

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JavaObject):
            return NotImplemented
        return self.class_name == other.class_name and self.fields == other.fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}=<self>" if v is self else f"{k}={v!r}" for k, v in self.fields.items()
        )
        return f"JavaObject({self.class_name!r}, {inner})"


class JavaEnum:
    """A constant of a Java enum that no Python `enum.Enum` is registered for.

    Java writes an enum constant as an object with the single field `name`, so
    every unregistered class whose only field is a string `name` decodes to a
    `JavaEnum` (it re-encodes identically either way). It is hashable, so
    enums work as map keys (`EnumMap`, `Map<Color, V>`), and reads like a
    read-only `JavaObject` (`e["name"]`, `e.fields`).
    """

    __slots__ = ("class_name", "name")

    def __init__(self, class_name: str, name: str) -> None:
        self.class_name = class_name
        self.name = name

    @property
    def fields(self) -> dict[str, Any]:
        return {"name": self.name}

    def __getitem__(self, field: str) -> Any:
        return self.fields[field]

    def get(self, field: str, default: Any = None) -> Any:
        return self.fields.get(field, default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JavaEnum):
            return NotImplemented
        return self.class_name == other.class_name and self.name == other.name

    def __hash__(self) -> int:
        return hash((self.class_name, self.name))

    def __repr__(self) -> str:
        return f"JavaEnum({self.class_name!r}, {self.name!r})"


class JavaException(Exception):
    """A `java.lang.Throwable` of a class no Python class is registered for.

    Keeps every field (`detailMessage`, `cause`, `stackTrace`, ...) in stream order
    so it re-encodes identically; `message`, `cause` and `stack_trace` read them.
    It can be raised. Equality is identity, as for every Python exception.
    """

    def __init__(self, class_name: str, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(class_name)
        self.class_name = class_name
        self.fields: dict[str, Any] = dict(fields) if fields else {}

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    @property
    def message(self) -> str | None:
        msg = self.fields.get("detailMessage")
        return msg if isinstance(msg, str) else None

    @property
    def cause(self) -> Any:
        """The cause, or None. (Java marks "no cause" by a throwable that is its own cause.)"""
        cause = self.fields.get("cause")
        return None if cause is self else cause

    @property
    def stack_trace(self) -> list[str]:
        """Java's `at Class.method(File.java:42)` lines, from the `stackTrace` field."""
        return [_frame_text(e) for e in _iter(self.fields.get("stackTrace"))]

    def __str__(self) -> str:
        msg = self.message
        return self.class_name if msg is None else f"{self.class_name}: {msg}"

    def __repr__(self) -> str:
        return f"JavaException({self.class_name!r}, message={self.message!r})"


def _iter(value: Any) -> Iterator[Any]:
    return iter(value) if isinstance(value, list) else iter(())


def _frame_text(element: Any) -> str:
    fields: dict[str, Any] = element.fields if isinstance(element, JavaObject) else {}
    get = fields.get
    where = get("fileName") or "Unknown Source"
    line = get("lineNumber")
    if isinstance(line, int) and line >= 0:
        where = f"{where}:{line}"
    return f"at {get('declaringClass')}.{get('methodName')}({where})"
