"""Hessian 2.0 decoder: bytes in, Python values out (sans-IO, whole buffers).

Every value starts with one tag byte (spec section 6, "Bytecode map"); the
decoder dispatches on it through a 256-entry table of small methods that read
the rest with an integer offset into an immutable `bytes`:

    x00-x1f string, 0-31 units          x20-x2f binary, 0-15 bytes
    x30-x33 string, 0-1023 units (+1)   x34-x37 binary, 0-1023 bytes (+1)
    x38-x3f long, 3 bytes               'A' x41 binary chunk   'B' x42 final binary
    'C' x43 class definition            'D' x44 double, 8 bytes
    'F' x46 false   'T' x54 true        'N' x4e null
    'H' x48 untyped map .. 'Z'          'M' x4d typed map .. 'Z'
    'I' x49 int, 4 bytes                'L' x4c long, 8 bytes     x59 long, 4 bytes
    x4a date, 8-byte ms                 x4b date, 4-byte minutes
    'O' x4f object, class ref as int    x60-x6f object, class ref 0-15
    'Q' x51 back-reference (int)        'R' x52 string chunk     'S' x53 final string
    x55 typed list .. 'Z'               'V' x56 typed list, int length
    x57 untyped list .. 'Z'             'X' x58 untyped list, int length
    x70-x77 typed list, 0-7 items       x78-x7f untyped list, 0-7 items
    x5b 0.0   x5c 1.0   x5d byte->double   x5e short->double   x5f int ms->double
    x80-xbf int -16..47   xc0-xcf int, 2 bytes   xd0-xd7 int, 3 bytes
    xd8-xef long -8..15   xf0-xff long, 2 bytes

One `Decoder` reads a stream of values that share class definitions, type
names and back-references, as one Hessian2Input does (SOFARPC writes a
request object and then each argument into one stream).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from sofamesh.codecs.hessian2.classes import ClassRegistry
from sofamesh.codecs.hessian2.decode_scalars import ScalarReader
from sofamesh.codecs.hessian2.errors import Hessian2DecodeError
from sofamesh.codecs.hessian2.limits import DEFAULT_LIMITS, Hessian2Limits
from sofamesh.codecs.hessian2.objects import ClassReader, reader_for
from sofamesh.codecs.hessian2.types import TypedList, TypedMap

_PENDING = object()  # reference slot of an immutable object whose fields are being read
_END = 0x5A  # 'Z'

Handler = Callable[["Decoder", int], Any]


class Decoder(ScalarReader):
    """Reads consecutive values from one Hessian 2.0 stream held in memory.

    `read()` returns the next value; `at_end` tells whether bytes remain. Any
    problem raises `Hessian2DecodeError` with the byte offset, after which the
    decoder refuses further reads (its reference tables may be half-built).
    """

    __slots__ = ("_classes", "_depth", "_failed", "_refs", "_registry", "_types")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        *,
        registry: ClassRegistry | None = None,
        limits: Hessian2Limits = DEFAULT_LIMITS,
    ) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        if len(data) > limits.max_size:
            raise Hessian2DecodeError(f"input of {len(data)} bytes exceeds max_size", 0)
        self._data = data
        self._pos = 0
        self._end = len(data)
        self._refs: list[Any] = []
        self._classes: list[ClassReader] = []
        self._types: list[str] = []
        self._depth = 0
        self._limits = limits
        self._registry = registry
        self._failed = False

    @property
    def offset(self) -> int:
        """Bytes consumed so far."""
        return self._pos

    @property
    def at_end(self) -> bool:
        """True when every byte has been read."""
        return self._pos >= self._end

    def read(self) -> Any:
        """Decode the next value of the stream."""
        if self._failed:
            raise Hessian2DecodeError("decoder already failed", self._pos)
        if self._pos >= self._end:
            raise Hessian2DecodeError("no more values in the input", self._pos)
        try:
            return self._value()
        except Hessian2DecodeError:
            self._failed = True
            raise
        except (IndexError, struct.error):
            self._failed = True
            raise Hessian2DecodeError("input ends inside a value", self._end) from None
        except RecursionError:
            self._failed = True
            raise Hessian2DecodeError("nesting too deep for Python", self._pos) from None

    def read_all(self) -> list[Any]:
        """Decode every remaining value."""
        out = []
        while not self.at_end:
            out.append(self.read())
        return out

    # ---------------------------------------------------------------- dispatch
    def _value(self) -> Any:
        pos = self._pos
        data = self._data
        tag = data[pos]
        if tag < 0x20:  # the commonest value: a short string; ASCII is one byte per unit
            end = pos + 1 + tag
            raw = data[pos + 1 : end]
            if len(raw) == tag and raw.isascii():
                self._pos = end
                return raw.decode("ascii")
        self._pos = pos + 1
        if 0x80 <= tag <= 0xBF:  # the next commonest: an int from -16 to 47
            return tag - 0x90
        return _TABLE[tag](self, tag)

    def _bad_tag(self, tag: int) -> Any:
        self._pos -= 1
        what = "unexpected end marker 'Z'" if tag == _END else f"unknown tag 0x{tag:02x}"
        raise self._error(what)

    def _expect(self, ok: Callable[[int], bool], what: str) -> Any:
        """Read a value whose tag must satisfy `ok` (an int, a string)."""
        tag = self._data[self._pos]
        if not ok(tag):
            raise self._error(f"expected {what}, found tag 0x{tag:02x}")
        return self._value()

    def _int(self) -> int:
        return int(self._expect(_is_int_tag, "an int"))

    def _str(self) -> str:
        return str(self._expect(_is_string_tag, "a string"))

    def _count(self, n: int, limit: int, what: str) -> int:
        """Check a length from the stream before anything is allocated for it."""
        if n < 0 or n > limit:
            raise self._error(f"{what} length {n} is negative or over the limit {limit}")
        if n > self._end - self._pos:  # every item takes at least one byte
            raise Hessian2DecodeError(f"input ends inside {what} of {n}", self._end)
        return n

    def _enter(self) -> None:
        """Account for a list, map or object just added to the reference table."""
        self._depth += 1
        limits = self._limits
        if self._depth > limits.max_depth:
            raise self._error(f"nesting deeper than max_depth={limits.max_depth}")
        if len(self._refs) > limits.max_objects:
            raise self._error(f"more than max_objects={limits.max_objects} lists, maps, objects")

    # ---------------------------------------------------------------- lists and maps
    def _type(self) -> str:
        """A type name, or an int reference to one seen earlier in the stream (spec 3.10)."""
        tag = self._data[self._pos]
        if _is_string_tag(tag):
            name = self._str()
            if not name:
                raise self._error("empty type name")
            self._types.append(name)
            return name
        index = self._int()
        if not 0 <= index < len(self._types):
            raise self._error(f"type reference {index} out of range")
        return self._types[index]

    def _values(self, n: int) -> list[Any]:
        """The next n values. The dispatch of `_value` is inlined: this loop reads
        most values of a body (object fields, list items), and a call per value
        is most of a pure-Python decoder's time."""
        data, table = self._data, _TABLE
        out: list[Any] = []
        append = out.append
        for _ in range(n):
            pos = self._pos
            tag = data[pos]
            self._pos = pos + 1
            append(table[tag](self, tag))
        return out

    def _fixed(self, items: list[Any], n: int) -> list[Any]:
        self._count(n, self._limits.max_items, "a list")
        self._refs.append(items)
        self._enter()
        items += self._values(n)
        self._depth -= 1
        return items

    def _variable(self, items: list[Any]) -> list[Any]:
        self._refs.append(items)
        self._enter()
        data, value, limit = self._data, self._value, self._limits.max_items
        while data[self._pos] != _END:
            if len(items) >= limit:
                raise self._error(f"list longer than max_items={limit}")
            items.append(value())
        self._pos += 1
        self._depth -= 1
        return items

    def _list_compact(self, tag: int) -> Any:
        return self._fixed([], tag - 0x78)

    def _list_typed_compact(self, tag: int) -> Any:
        return self._fixed(TypedList(self._type()), tag - 0x70)

    def _list_fixed(self, tag: int) -> Any:
        return self._fixed([], self._int())

    def _list_typed_fixed(self, tag: int) -> Any:
        items = TypedList(self._type())
        return self._fixed(items, self._int())

    def _list_variable(self, tag: int) -> Any:
        return self._variable([])

    def _list_typed_variable(self, tag: int) -> Any:
        return self._variable(TypedList(self._type()))

    def _map(self, tag: int) -> Any:
        return self._entries({})

    def _map_typed(self, tag: int) -> Any:
        return self._entries(TypedMap(self._type()))

    def _entries(self, out: dict[Any, Any]) -> dict[Any, Any]:
        self._refs.append(out)
        self._enter()
        data, value, limit = self._data, self._value, self._limits.max_items
        while data[self._pos] != _END:
            key = value()
            try:
                out[key] = value()
            except TypeError:
                raise self._error(f"map key of type {type(key).__name__} is unhashable") from None
            if len(out) > limit:
                raise self._error(f"map larger than max_items={limit}")
        self._pos += 1
        self._depth -= 1
        return out

    # ---------------------------------------------------------------- objects and refs
    def _ref(self, tag: int) -> Any:
        index = self._int()
        refs = self._refs
        if not 0 <= index < len(refs):
            raise self._error(f"back-reference {index} out of range")
        value = refs[index]
        if value is _PENDING:
            raise self._error(f"back-reference {index} to an object still being read")
        return value

    def _class_def(self, tag: int) -> Any:
        # class-def ::= 'C' string int string*, then the value it precedes.
        # A loop, not recursion, over runs of definitions.
        while tag == 0x43:
            name = self._str()
            n = self._count(self._int(), self._limits.max_items, "a class definition")
            fields = tuple(self._str() for _ in range(n))
            if not (name and all(fields)):
                raise self._error("empty class or field name")
            if len(self._classes) >= self._limits.max_objects:
                raise self._error(f"more than max_objects={self._limits.max_objects} classes")
            self._classes.append(reader_for(name, fields, self._registry))
            tag = self._data[self._pos]
            self._pos += 1
        return _TABLE[tag](self, tag)

    def _object_compact(self, tag: int) -> Any:
        return self._object(tag - 0x60)

    def _object_long(self, tag: int) -> Any:
        return self._object(self._int())

    def _object(self, index: int) -> Any:
        if not 0 <= index < len(self._classes):
            raise self._error(f"object of undefined class {index}")
        reader = self._classes[index]
        n = len(reader.fields)  # checked against max_items with the class definition
        if n > self._end - self._pos:
            raise Hessian2DecodeError(f"input ends inside an object of {n} fields", self._end)
        refs = self._refs
        obj = reader.new()
        if obj is not None:
            refs.append(obj)
            self._enter()
            reader.fill(obj, self._values(n))
        else:
            slot = len(refs)
            refs.append(_PENDING)
            self._enter()
            values = self._values(n)
            try:
                obj = reader.build(values)
            except ValueError as exc:
                raise self._error(str(exc)) from None
            refs[slot] = obj
        self._depth -= 1
        return obj


def _is_int_tag(tag: int) -> bool:
    return 0x80 <= tag <= 0xD7 or tag == 0x49


def _is_string_tag(tag: int) -> bool:
    return tag < 0x20 or 0x30 <= tag <= 0x33 or tag == 0x52 or tag == 0x53


def _build_table() -> list[Handler]:
    table: list[Handler] = [Decoder._bad_tag] * 256

    def put(first: int, last: int, handler: Handler) -> None:
        for tag in range(first, last + 1):
            table[tag] = handler

    D = Decoder
    put(0x00, 0x1F, D._string_1)
    put(0x20, 0x2F, D._binary_1)
    put(0x30, 0x33, D._string_2)
    put(0x34, 0x37, D._binary_2)
    put(0x38, 0x3F, D._long_3)
    put(0x60, 0x6F, D._object_compact)
    put(0x70, 0x77, D._list_typed_compact)
    put(0x78, 0x7F, D._list_compact)
    put(0x80, 0xBF, D._int_1)
    put(0xC0, 0xCF, D._int_2)
    put(0xD0, 0xD7, D._int_3)
    put(0xD8, 0xEF, D._long_1)
    put(0xF0, 0xFF, D._long_2)
    singles: dict[bytes, Handler] = {
        b"A": D._binary_chunk, b"B": D._binary_final, b"C": D._class_def, b"D": D._double_8,
        b"F": D._false, b"H": D._map, b"I": D._int_4, b"J": D._date_ms, b"K": D._date_minutes,
        b"L": D._long_8, b"M": D._map_typed, b"N": D._null, b"O": D._object_long,
        b"Q": D._ref, b"R": D._string_chunk, b"S": D._string_final, b"T": D._true,
        b"U": D._list_typed_variable, b"V": D._list_typed_fixed, b"W": D._list_variable,
        b"X": D._list_fixed, b"Y": D._long_4, b"[": D._double_0, b"\\": D._double_1,
        b"]": D._double_byte, b"^": D._double_short, b"_": D._double_mill,
    }  # fmt: skip
    for key, handler in singles.items():
        table[key[0]] = handler
    return table


_TABLE = _build_table()
