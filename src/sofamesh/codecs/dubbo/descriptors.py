"""JVM parameter descriptors, as a Dubbo request names its method's parameter types.

`Ljava/lang/String;I[J` is (String, int, long[]): `parse` splits a descriptor into one
descriptor per parameter, `descriptor_of` infers one for a Python value, and
`java_name` turns a descriptor into the class name Java prints (for `methods=` lists
and error messages). JVM spec 4.3.2.
"""

from __future__ import annotations

import functools
from typing import Any

from sofamesh.codecs import hessian2
from sofamesh.codecs.dubbo.errors import LocalProtocolError

_PRIMITIVES = {
    "Z": "boolean", "B": "byte", "C": "char", "S": "short", "I": "int", "J": "long",
    "F": "float", "D": "double", "V": "void",
}  # fmt: skip

OBJECT = "Ljava/lang/Object;"


def parse(descriptor: str) -> list[str]:
    """The parameter descriptors of `descriptor`, in order ("" has none)."""
    out: list[str] = []
    i, n = 0, len(descriptor)
    while i < n:
        start = i
        while i < n and descriptor[i] == "[":
            i += 1
        if i >= n:
            raise ValueError(f"descriptor {descriptor!r} ends inside an array type")
        if descriptor[i] == "L":
            end = descriptor.find(";", i)
            if end < 0:
                raise ValueError(f"descriptor {descriptor!r}: a class type has no ';'")
            i = end + 1
        elif descriptor[i] in _PRIMITIVES and descriptor[i] != "V":
            i += 1
        else:
            raise ValueError(f"descriptor {descriptor!r}: bad type character {descriptor[i]!r}")
        out.append(descriptor[start:i])
    return out


@functools.lru_cache(maxsize=1024)
def count(descriptor: str) -> int:
    """How many arguments a request with this descriptor carries (a proxy asks per
    request; a service has few methods, so the answer is cached)."""
    return len(parse(descriptor))


def java_name(descriptor: str) -> str:
    """`Ljava/lang/String;` -> `java.lang.String`, `[I` -> `int[]`."""
    dims = len(descriptor) - len(descriptor.lstrip("["))
    base = descriptor[dims:]
    name = base[1:-1].replace("/", ".") if base.startswith("L") else _PRIMITIVES[base]
    return name + "[]" * dims


def of_java_name(name: str) -> str:
    """`java.lang.String` -> `Ljava/lang/String;`, `int` -> `I`, `long[]` -> `[J`."""
    dims = 0
    while name.endswith("[]"):
        name, dims = name[:-2], dims + 1
    prim = {v: k for k, v in _PRIMITIVES.items()}.get(name)
    return "[" * dims + (prim or f"L{name.replace('.', '/')};")


def descriptor_of(value: Any) -> str:
    """A descriptor for a Python value (hessian2's wrapper types say exactly which)."""
    exact = {
        hessian2.Int: "I", hessian2.Long: "J", hessian2.Short: "S", hessian2.Byte: "B",
        hessian2.Float: "F", hessian2.Double: "D", hessian2.Char: "C",
    }.get(type(value))  # fmt: skip
    if exact is not None:
        return exact
    if isinstance(value, bool):
        return "Ljava/lang/Boolean;"
    if isinstance(value, int):
        return "I" if -(2**31) <= value < 2**31 else "J"
    if isinstance(value, float):
        return "D"
    if isinstance(value, str):
        return "Ljava/lang/String;"
    if isinstance(value, dict):
        return "Ljava/util/Map;"
    if isinstance(value, list | tuple):
        return "Ljava/util/List;"
    if isinstance(value, hessian2.JavaObject):
        return of_java_name(value.class_name)
    if value is None:
        return OBJECT
    raise LocalProtocolError(f"cannot infer a Java type for {type(value).__name__}: declare it")
