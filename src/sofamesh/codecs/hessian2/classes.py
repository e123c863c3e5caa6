"""Registering Python classes as Java classes.

A `ClassRegistry` maps Java class names to Python classes, both ways. It is an
ordinary object handed to `Encoder`/`Decoder` (or `dumps`/`loads`): nothing is
registered by importing a module, and two registries never see each other.

    registry = ClassRegistry()

    @registry.java_class("com.alipay.sofa.rpc.core.request.SofaRequest")
    @attrs.define
    class SofaRequest:
        targetAppName: str | None = None
        methodName: str | None = None
        ...

Three kinds of class can be registered:

- attrs classes and dataclasses: their fields, in definition order, are the
  Java fields (Java reads fields by name, so the order only matters for
  byte-identical output; declare them in the order Java writes them);
- `enum.Enum` subclasses: Java enums, written as Java's EnumSerializer does
  (a class with the single field `name`, holding the constant's name);
- any other class, given `fields=`: read with `getattr`, built with
  `cls.__new__` and `setattr`.

Decoding builds objects without calling `__init__` (like pickle), so an object
can be referenced from inside its own fields; validators do not run. Fields
the stream lacks get their declared default (or None); fields the Python class
lacks are ignored, as Java's own deserializer does.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import attrs

_T = TypeVar("_T", bound=type)


def _none() -> None:
    return None


def _attrs_default(field: attrs.Attribute[Any]) -> Callable[[], Any]:
    default = field.default
    if default is attrs.NOTHING:
        return _none
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        factory: Any = default
        if factory.takes_self:  # needs the instance; the plain factory cannot be called
            return _none
        return factory.factory  # type: ignore[no-any-return]
    return lambda: default


def _dataclass_default(field: dataclasses.Field[Any]) -> Callable[[], Any]:
    if field.default is not dataclasses.MISSING:
        default = field.default
        return lambda: default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory
    return _none


def _describe(cls: type, fields: Sequence[str] | None) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Java field names and default factories of a record-like class."""
    if attrs.has(cls):
        found = {f.name: _attrs_default(f) for f in attrs.fields(cls)}
    elif dataclasses.is_dataclass(cls):
        found = {f.name: _dataclass_default(f) for f in dataclasses.fields(cls)}
    elif fields is None:
        raise TypeError(f"{cls.__qualname__} is not an attrs class or dataclass: pass fields=")
    else:
        found = {}
    names = tuple(fields) if fields is not None else tuple(found)
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"fields of {cls.__qualname__} must be distinct non-empty names")
    return names, {n: found.get(n, _none) for n in names}


@attrs.frozen
class ClassBinding:
    """How one Python class maps to one Java class."""

    java_name: str
    cls: type
    fields: tuple[str, ...]
    defaults: dict[str, Callable[[], Any]] = attrs.field(eq=False, repr=False)
    is_enum: bool = False


class ClassRegistry:
    """Java class names <-> Python classes, for one codec configuration."""

    def __init__(self, bindings: Iterable[ClassBinding] = ()) -> None:
        self._by_name: dict[str, ClassBinding] = {}
        self._by_type: dict[type, ClassBinding] = {}
        for binding in bindings:
            self._add(binding)

    def register(self, java_name: str, cls: type, *, fields: Sequence[str] | None = None) -> None:
        """Map `cls` to the Java class `java_name` (see the module docstring for `fields`)."""
        if not java_name or not isinstance(java_name, str):
            raise ValueError("java_name must be a non-empty string")
        if isinstance(cls, type) and issubclass(cls, enum.Enum):
            binding = ClassBinding(java_name, cls, ("name",), {"name": _none}, is_enum=True)
        else:
            names, defaults = _describe(cls, fields)
            binding = ClassBinding(java_name, cls, names, defaults)
        self._add(binding)

    def java_class(
        self, java_name: str, *, fields: Sequence[str] | None = None
    ) -> Callable[[_T], _T]:
        """Class decorator form of `register`."""

        def decorate(cls: _T) -> _T:
            self.register(java_name, cls, fields=fields)
            return cls

        return decorate

    def _add(self, binding: ClassBinding) -> None:
        old = self._by_name.get(binding.java_name) or self._by_type.get(binding.cls)
        if old is not None and old != binding:
            raise ValueError(
                f"{binding.java_name} / {binding.cls.__qualname__} conflicts with "
                f"{old.java_name} / {old.cls.__qualname__}"
            )
        self._by_name[binding.java_name] = binding
        self._by_type[binding.cls] = binding

    def by_name(self, java_name: str) -> ClassBinding | None:
        return self._by_name.get(java_name)

    def by_type(self, cls: type) -> ClassBinding | None:
        return self._by_type.get(cls)

    def bindings(self) -> list[ClassBinding]:
        return list(self._by_name.values())

    def copy(self) -> ClassRegistry:
        """A new registry with the same bindings, to extend without touching this one."""
        return ClassRegistry(self._by_name.values())

    def __contains__(self, item: object) -> bool:
        return item in self._by_name or item in self._by_type

    def __len__(self) -> int:
        return len(self._by_name)
