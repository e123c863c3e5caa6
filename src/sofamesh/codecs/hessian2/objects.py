"""Turning a Hessian object (a class definition plus field values) into a Python value.

Each class definition in a stream gets one reader, chosen once when the
definition is read (spec section 3.6, "class-def"). Two shapes exist:

- mutable readers create the object before its fields are read, because a
  field may refer back to the object (Java's `Throwable.cause` points to the
  throwable itself when there is no cause);
- value readers build an immutable value (Decimal, an enum constant, a Java
  number handle) after the fields are read; the decoder holds the object's
  reference slot meanwhile and rejects a reference to it.

Classes Java writes in a special way, and which need no registration:

| Java class | fields | Python value |
|---|---|---|
| java.math.BigDecimal | value | `decimal.Decimal` (the form SOFA and Dubbo Hessian write) |
| com.caucho.hessian.io.{Float,Short,Byte}Handle | _value | `Float` / `Short` / `Byte` |
| any enum (Hessian's EnumSerializer) | name | `JavaEnum` (hashable) |
| any Throwable | detailMessage, stackTrace, ... | `JavaException` |
| anything else | any | `JavaObject` |
"""

from __future__ import annotations

import dataclasses
import decimal
from collections.abc import Callable
from typing import Any

import attrs

from sofamesh.codecs.hessian2.classes import ClassBinding, ClassRegistry
from sofamesh.codecs.hessian2.types import (
    Byte,
    Float,
    JavaEnum,
    JavaException,
    JavaObject,
    Short,
)

BIG_DECIMAL = "java.math.BigDecimal"
FLOAT_HANDLE = "com.caucho.hessian.io.FloatHandle"
SHORT_HANDLE = "com.caucho.hessian.io.ShortHandle"
BYTE_HANDLE = "com.caucho.hessian.io.ByteHandle"


class ClassReader:
    """Reads instances of one class definition. Subclasses override `new`/`fill` or `build`."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: tuple[str, ...]) -> None:
        self.name = name
        self.fields = fields

    def new(self) -> Any:
        """A fresh object to fill, or None for a value built by `build` after its fields."""
        return None

    def fill(self, obj: Any, values: list[Any]) -> None:
        """Set the fields of the object `new` made (two-phase readers: references to it resolve)."""
        raise TypeError(f"{type(self).__name__}.new() made an object but the reader has no fill()")

    def build(self, values: list[Any]) -> Any:
        """The value from its fields (one-phase readers); ValueError if they make no sense."""
        raise TypeError(f"{type(self).__name__} has neither new()/fill() nor build()")


class GenericReader(ClassReader):
    __slots__ = ()

    def new(self) -> Any:
        return JavaObject(self.name)

    def fill(self, obj: Any, values: list[Any]) -> None:
        obj.fields = dict(zip(self.fields, values, strict=True))


class ExceptionReader(GenericReader):
    __slots__ = ()

    def new(self) -> Any:
        return JavaException(self.name)


class RecordReader(ClassReader):
    """A registered attrs class, dataclass or plain class."""

    __slots__ = ("binding", "direct", "missing")

    def __init__(self, binding: ClassBinding, fields: tuple[str, ...]) -> None:
        super().__init__(binding.java_name, fields)
        self.binding = binding
        known = binding.defaults
        self.missing = [(name, make) for name, make in known.items() if name not in fields]
        # Dataclass and attrs instances with a __dict__, when every stream field
        # is a Python field, take one dict update; others go field by field.
        cls = binding.cls
        record = dataclasses.is_dataclass(cls) or attrs.has(cls)
        self.direct = record and cls.__dictoffset__ != 0 and all(f in known for f in fields)

    def new(self) -> Any:
        cls: Any = self.binding.cls
        return cls.__new__(cls)

    def fill(self, obj: Any, values: list[Any]) -> None:
        setter = object.__setattr__  # also works for frozen attrs classes and dataclasses
        if self.direct:
            obj.__dict__.update(zip(self.fields, values, strict=True))
        else:
            known = self.binding.defaults
            for name, value in zip(self.fields, values, strict=True):
                if name in known:
                    setter(obj, name, value)
        for name, make in self.missing:
            setter(obj, name, make())


class EnumReader(ClassReader):
    __slots__ = ("binding",)

    def __init__(self, binding: ClassBinding, fields: tuple[str, ...]) -> None:
        super().__init__(binding.java_name, fields)
        self.binding = binding

    def build(self, values: list[Any]) -> Any:
        name = dict(zip(self.fields, values, strict=True)).get("name")
        try:
            return self.binding.cls[name]  # type: ignore[index]
        except (KeyError, TypeError):
            raise ValueError(f"{self.name} has no constant {name!r}") from None


class JavaEnumReader(ClassReader):
    __slots__ = ()

    def build(self, values: list[Any]) -> Any:
        if isinstance(values[0], str):
            return JavaEnum(self.name, values[0])
        return JavaObject(self.name, {"name": values[0]})  # a one-field object, not an enum


class DecimalReader(ClassReader):
    __slots__ = ()

    def build(self, values: list[Any]) -> Any:
        text = values[0]
        try:
            value = decimal.Decimal(text) if isinstance(text, str) else None
        except decimal.InvalidOperation:
            value = None
        if value is None or not value.is_finite():
            raise ValueError(f"BigDecimal value {text!r} is not a finite decimal")
        return value


class HandleReader(ClassReader):
    __slots__ = ("wrap",)

    def __init__(self, name: str, fields: tuple[str, ...], wrap: Callable[[Any], Any]) -> None:
        super().__init__(name, fields)
        self.wrap = wrap

    def build(self, values: list[Any]) -> Any:
        value = values[0]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name} holds {type(value).__name__}, not a number")
        try:
            return self.wrap(value)
        except (OverflowError, ValueError, TypeError):
            raise ValueError(f"{self.name} value {value!r} is out of range") from None


def _float_handle(value: Any) -> Float:
    return Float(value)


def _whole(wrap: Callable[[int], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, float):
            raise TypeError("not an integer")
        return wrap(int(value))

    return convert


_HANDLES: dict[str, Callable[[Any], Any]] = {
    FLOAT_HANDLE: _float_handle,
    SHORT_HANDLE: _whole(Short),
    BYTE_HANDLE: _whole(Byte),
}


def reader_for(name: str, fields: tuple[str, ...], registry: ClassRegistry | None) -> ClassReader:
    """Choose how to read objects of the class definition (`name`, `fields`)."""
    binding = registry.by_name(name) if registry is not None else None
    if binding is not None:
        if binding.is_enum:
            return EnumReader(binding, fields)
        return RecordReader(binding, fields)
    if len(fields) == 1:
        if name == BIG_DECIMAL and fields[0] == "value":
            return DecimalReader(name, fields)
        if name in _HANDLES and fields[0] == "_value":
            return HandleReader(name, fields, _HANDLES[name])
        if fields[0] == "name":
            return JavaEnumReader(name, fields)
    if "detailMessage" in fields and "stackTrace" in fields:
        return ExceptionReader(name, fields)
    return GenericReader(name, fields)
