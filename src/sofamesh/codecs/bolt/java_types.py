"""Java types of SOFARPC arguments: Python values made to travel as declared, and guessed.

SOFARPC calls name each argument's Java type (`methodArgSigs`, sofarpc.py): `coerce(value,
sig)` makes a Python value travel as that type, `signature_of(value)` guesses a type when
none was declared (see docs/protocols/bolt.md, "Python types meet Java signatures").

Signatures are Java's `Class.getName()`, as SOFARPC writes them: `int`, `java.lang.Long`,
`[I` (int[]), `[Ljava.lang.String;` (String[]), `com.example.Person`. Hessian names
arrays differently (`[int`, `[string`, `[com.example.Person`), hence the two tables.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sofamesh.codecs.hessian2 import (
    Byte,
    Char,
    ClassRegistry,
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

_PRIMITIVES: dict[str, Callable[[Any], Any]] = {
    "int": Int, "long": Long, "short": Short, "byte": Byte, "float": Float, "double": float,
    "boolean": bool, "char": Char,
}  # fmt: skip
_BOXED = {
    "java.lang.Integer": "int", "java.lang.Long": "long", "java.lang.Short": "short",
    "java.lang.Byte": "byte", "java.lang.Float": "float", "java.lang.Double": "double",
    "java.lang.Boolean": "boolean", "java.lang.Character": "char",
}  # fmt: skip
_ARRAY_CODES = {
    "I": "int", "J": "long", "S": "short", "B": "byte", "F": "float", "D": "double",
    "Z": "boolean", "C": "char",
}  # fmt: skip
_HESSIAN_NAMES = {"java.lang.String": "string", "java.lang.Object": "object"}
_PLAIN_LISTS = frozenset({"java.util.List", "java.util.ArrayList", "java.util.Collection"})
_PLAIN_MAPS = frozenset({"java.util.Map", "java.util.HashMap"})
_TYPED_COLLECTIONS = {"java.util.Set": "java.util.HashSet"}
_ANY = frozenset({"java.lang.Object", "java.io.Serializable"})


def coerce(value: Any, sig: str) -> Any:
    """`value` made to travel as the Java type `sig`; TypeError if it cannot be one.

    Python's `int` becomes `int`/`long`/`short`/`byte` as declared, `float` becomes
    `float`/`double`, lists become typed arrays (`[I` -> `[int`), and a `dict` passed for
    a class becomes an object of that class (like sofa-rpc-node's `{$class, $}`).
    """
    if sig in _BOXED:
        return None if value is None else _scalar(value, _BOXED[sig], sig)
    if sig in _PRIMITIVES:
        if value is None:
            raise TypeError(f"a Java {sig} cannot be null")
        return _scalar(value, sig, sig)
    if value is None or sig in _ANY:
        return value
    if sig == "java.lang.String":
        return _checked(value, str, sig)
    if sig.startswith("["):
        return _array(value, sig)
    if sig in _PLAIN_LISTS:
        return _checked(value, (list, tuple, set, frozenset), sig)
    if sig in _PLAIN_MAPS:
        return _checked(value, dict, sig)
    typed = _TYPED_COLLECTIONS.get(sig, sig)
    if isinstance(value, list | tuple | set | frozenset) and not isinstance(value, TypedList):
        return TypedList(typed, value)  # java.util.LinkedList, HashSet ...
    if type(value) is dict:
        if sig.startswith("java.util.") and sig.endswith("Map"):
            return TypedMap(sig, value)
        return JavaObject(sig, value)
    return value


def _checked(value: Any, kinds: type | tuple[type, ...], sig: str) -> Any:
    if isinstance(value, kinds):
        return value
    raise TypeError(f"cannot pass {type(value).__name__} {value!r:.60} as a Java {sig}")


def _scalar(value: Any, prim: str, sig: str) -> Any:
    if prim == "boolean":
        return _checked(value, bool, sig)
    if isinstance(value, bool):
        raise TypeError(f"cannot pass bool {value!r} as a Java {sig}")
    if prim == "char":
        _checked(value, str, sig)
    elif prim in ("float", "double"):
        _checked(value, (int, float), sig)
    else:
        _checked(value, int, sig)
    try:
        return _PRIMITIVES[prim](value)
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"{value!r:.60} is not a Java {sig}: {exc}") from None


def _array(value: Any, sig: str) -> Any:
    if sig == "[B":  # byte[] is Hessian binary
        return bytes(_checked(value, (bytes, bytearray, memoryview, list, tuple), sig))
    if sig == "[C":  # char[] is written as a string
        return _checked(value, str, sig)
    component = _component(sig[1:])
    items = _checked(value, (list, tuple), sig)
    return TypedList("[" + _hessian_name(sig[1:]), [coerce(v, component) for v in items])


def _component(desc: str) -> str:
    """The Java signature of an array's component: `I` -> int, `Lx.Y;` -> x.Y, `[I` -> [I."""
    if desc in _ARRAY_CODES:
        return _ARRAY_CODES[desc]
    if desc.startswith("L") and desc.endswith(";"):
        return desc[1:-1]
    if desc.startswith("["):
        return desc
    raise TypeError(f"not a Java array signature: [{desc}")


def _hessian_name(desc: str) -> str:
    if desc.startswith("["):
        return "[" + _hessian_name(desc[1:])
    name = _component(desc)
    return _HESSIAN_NAMES.get(name, name)


def _descriptor(hessian_type: str) -> str:
    """A typed list's Java signature: `[int` -> `[I`, `[string` -> `[Ljava.lang.String;`."""
    if not hessian_type.startswith("["):
        return hessian_type
    inner = hessian_type[1:]
    if inner.startswith("["):
        return "[" + _descriptor(inner)
    codes = {name: code for code, name in _ARRAY_CODES.items()}
    if inner in codes:
        return "[" + codes[inner]
    names = {short: full for full, short in _HESSIAN_NAMES.items()}
    return f"[L{names.get(inner, inner)};"


def signature_of(value: Any, registry: ClassRegistry | None = None) -> str:
    """A Java signature for an argument nobody declared a type for.

    Scalars become primitives (`int` when it fits, else `long`; `double`; `boolean`),
    which is what Java interfaces mostly declare; declare the type when it is not.
    """
    kind = type(value)
    simple = _SIGNATURES.get(kind)
    if simple is not None:
        return simple
    if kind is int:
        return "int" if -(1 << 31) <= value < (1 << 31) else "long"
    if isinstance(value, TypedList | TypedMap):
        return _descriptor(value.java_type)
    if isinstance(value, JavaObject | JavaEnum | JavaException):
        return value.class_name
    binding = registry.by_type(kind) if registry is not None else None
    if binding is not None:
        return binding.java_name
    for kinds, sig in _FAMILIES:
        if isinstance(value, kinds):
            return sig
    return "java.lang.Object"


_SIGNATURES: dict[type, str] = {
    bool: "boolean", Int: "int", Long: "long", Short: "short", Byte: "byte", Float: "float",
    float: "double", Double: "double", Char: "char", str: "java.lang.String",
    bytes: "[B", bytearray: "[B", memoryview: "[B", type(None): "java.lang.Object",
}  # fmt: skip
_FAMILIES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    ((list, tuple), "java.util.List"),
    ((set, frozenset), "java.util.Set"),
    (dict, "java.util.Map"),
    (datetime, "java.util.Date"),
    (decimal.Decimal, "java.math.BigDecimal"),
    (str, "java.lang.String"),
    (int, "long"),
    (float, "double"),
)
