"""Shared helpers for the Hessian 2 tests: a strict structural comparison, hypothesis
strategies over the whole Python mapping, and drivers for the Java and Node peers."""

from __future__ import annotations

import dataclasses
import decimal
import enum
import functools
import json
import math
import operator
import os
import struct
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

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

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
REPO = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- registered test classes
class Color(enum.Enum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass
class Person:
    """Mirrors the peers' com.example.Person (field order as Java writes it)."""

    name: str | None = None
    age: int = 0
    tags: list[Any] | None = None


REGISTRY = ClassRegistry()
REGISTRY.register("com.example.Person", Person)
REGISTRY.register("com.example.Color", Color)


# ---------------------------------------------------------------- structural comparison
def same(expected: Any, actual: Any, *, java: bool = False, handles: bool = True) -> None:
    """Assert that `actual` is what decoding the encoding of `expected` must give.

    Types count (int vs Long, TypedList's type, class names), floats compare
    by bits, and sharing must match: an object met twice in `expected` must be
    one object in `actual`. `java=True` also applies what a trip through Java
    changes (HashMap order, classes Java lacks become maps, -0.0, ...).
    """
    _Same(java, handles).check(expected, actual, "$")


class _Same:
    def __init__(self, java: bool, handles: bool) -> None:
        self.java = java
        self.handles = handles
        self.memo: dict[int, Any] = {}

    def fail(self, path: str, expected: Any, actual: Any) -> None:
        raise AssertionError(f"at {path}: expected {expected!r:.200}, got {actual!r:.200}")

    def check(self, e: Any, a: Any, path: str) -> None:
        if id(e) in self.memo and _is_container(e):
            if self.memo[id(e)] is not a:
                self.fail(path, "the object seen before", a)
            return
        if _is_container(e):
            self.memo[id(e)] = a
            self.container(e, a, path)
            return
        want = self.scalar(e)
        if type(a) is not type(want):
            self.fail(path, f"{type(want).__name__} {want!r:.100}", f"{type(a).__name__}")
        if isinstance(want, float):
            if not _same_float(want, a):
                self.fail(path, want, a)
        elif isinstance(want, datetime):
            if a != want or a.tzinfo is not UTC:
                self.fail(path, want, a)
        elif isinstance(want, decimal.Decimal):
            if str(a) != str(want):
                self.fail(path, want, a)
        elif want != a:
            self.fail(path, want, a)

    def scalar(self, e: Any) -> Any:
        if self.java and isinstance(e, float) and e == 0:
            e = type(e)(0.0)  # Java writes -0.0 as 0.0
        t = type(e)
        if t is int or t is Int:
            return int(e) if INT_MIN <= e <= INT_MAX else Long(e)
        if t in (Short, Byte):
            return e if self.handles else int(e)
        if t is Float:
            return e if self.handles else float(e)
        if t is Double:
            return float(e)
        if t is Char:
            return str(e)
        if t in (bytearray, memoryview):
            return bytes(e)
        if t is datetime:
            ms = (e - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
        if self.java and isinstance(e, enum.Enum):
            return {"name": e.name}
        return e

    def container(self, e: Any, a: Any, path: str) -> None:
        if isinstance(e, JavaException):
            if not isinstance(a, JavaException) or a.class_name != e.class_name:
                self.fail(path, e, a)
            self.pairs(list(e.fields.items()), list(a.fields.items()), path)
        elif isinstance(e, JavaObject | JavaEnum) or dataclasses.is_dataclass(e):
            self.object(e, a, path)
        elif isinstance(e, dict):
            self.mapping(e, a, path)
        else:
            self.sequence(e, a, path)

    def object(self, e: Any, a: Any, path: str) -> None:
        if isinstance(e, JavaEnum):
            if a != ({"name": e.name} if self.java else e):
                self.fail(path, e, a)
            return None
        if dataclasses.is_dataclass(e):
            if type(a) is not type(e):
                self.fail(path, e, a)
            for f in dataclasses.fields(e):
                self.check(getattr(e, f.name), getattr(a, f.name), f"{path}.{f.name}")
            return None
        if self.java and e.class_name != "com.example.Person":  # Java lacks the class: a map
            return self.mapping(e.fields, a, path)
        if not isinstance(a, JavaObject) or a.class_name != e.class_name:
            return self.fail(path, e, a)
        if self.java:
            return self.mapping(e.fields, a.fields, path)
        return self.pairs(list(e.fields.items()), list(a.fields.items()), path)

    def mapping(self, e: Any, a: Any, path: str) -> None:
        want_type = _java_map_type(e) if self.java else getattr(e, "java_type", None)
        if not isinstance(a, dict) or getattr(a, "java_type", None) != want_type:
            return self.fail(path, f"map {want_type}", a)
        if not self.java:
            return self.pairs(list(e.items()), list(a.items()), path)
        if len(e) != len(a):
            return self.fail(path, e, a)
        for key, value in e.items():
            if key not in a:
                return self.fail(path, f"key {key!r}", a)
            self.check(value, a[key], f"{path}[{key!r}]")
        return None

    def pairs(self, e: list[Any], a: list[Any], path: str) -> None:
        if len(e) != len(a):
            self.fail(path, e, a)
        for i, ((ek, ev), (ak, av)) in enumerate(zip(e, a, strict=True)):
            self.check(ek, ak, f"{path}<key {i}>")
            self.check(ev, av, f"{path}[{ek!r}]")

    def sequence(self, e: Any, a: Any, path: str) -> None:
        want_type = _list_type(e, self.java)
        if not isinstance(a, list) or getattr(a, "java_type", None) != want_type:
            return self.fail(path, f"list {want_type}", a)
        items = list(e)
        if len(items) != len(a):
            return self.fail(path, items, a)
        if want_type == "java.util.HashSet" and self.java:  # Java's order: compare as sets
            if set(map(str, items)) != set(map(str, a)):
                self.fail(path, items, a)
            return None
        for i, (x, y) in enumerate(zip(items, a, strict=True)):
            self.check(x, y, f"{path}[{i}]")
        return None


def _is_container(v: Any) -> bool:
    return isinstance(
        v, list | tuple | dict | set | frozenset | JavaObject | JavaException | JavaEnum
    ) or (dataclasses.is_dataclass(v) and not isinstance(v, type))


def _list_type(e: Any, java: bool) -> str | None:
    if isinstance(e, set | frozenset):
        return "java.util.HashSet"
    t = getattr(e, "java_type", None)
    if java and t == "[java.lang.String":
        return "[string"  # Java reads String[] and writes it back as [string
    return t


def _java_map_type(e: Any) -> str | None:
    t = getattr(e, "java_type", None)
    return None if t == "java.util.HashMap" else t


def _same_float(want: float, got: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return struct.pack(">d", want) == struct.pack(">d", got)


# ---------------------------------------------------------------- strategies
def _floats32() -> st.SearchStrategy[Float]:
    return st.floats(width=32).map(Float)


def _datetimes() -> st.SearchStrategy[datetime]:
    zones = st.just(UTC) | st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-12), max_value=timedelta(hours=12))
    )
    return st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones
    ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def _big_binaries() -> st.SearchStrategy[bytes]:
    """Binaries past one 8189-byte chunk, cheap to generate (a repeated pattern)."""
    return st.builds(operator.mul, st.binary(min_size=1, max_size=4), st.integers(2100, 6000))


def texts(max_size: int = 20) -> st.SearchStrategy[str]:
    """Any Unicode text but lone surrogates, plus long repeated text that crosses chunks."""
    short = st.text(st.characters(exclude_categories=("Cs",)), max_size=max_size)
    long = st.builds(
        operator.mul, st.text(st.sampled_from("a中é😀"), min_size=1, max_size=3),
        st.integers(10_000, 17_000),
    )  # fmt: skip
    return short | short | short | long


def leaves(*, java: bool) -> st.SearchStrategy[Any]:
    ints = st.integers(LONG_MIN, LONG_MAX) | st.sampled_from(
        [-0x10, 0x2F, -0x800, 0x7FF, -0x40000, 0x3FFFF, INT_MIN, INT_MAX, INT_MAX + 1]
    )
    options = [
        st.none(), st.booleans(), ints, st.integers(INT_MIN, INT_MAX).map(Int),
        st.integers(LONG_MIN, LONG_MAX).map(Long), st.integers(-8, 0x40000).map(Long),
        st.integers(-(1 << 15), (1 << 15) - 1).map(Short), st.integers(-128, 127).map(Byte),
        st.floats(), st.floats(-1e6, 1e6).map(lambda f: round(f, 3)), _floats32(),
        st.floats().map(Double), texts(),
        st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)).map(Char),
        st.binary(max_size=40), _big_binaries(), _datetimes(),
        st.sampled_from(Color), st.builds(JavaEnum, st.sampled_from(["a.E", "b.F"]), texts(5)),
    ]  # fmt: skip
    if not java:  # the reference jar has no BigDecimal serializer (see docs)
        options.append(st.decimals(allow_nan=False, allow_infinity=False))
    return st.one_of(options)


_ARRAYS: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    "[int": lambda: st.integers(INT_MIN, INT_MAX),
    "[long": lambda: st.integers(LONG_MIN, LONG_MAX).map(Long),
    "[double": lambda: st.floats(allow_nan=False),
    "[boolean": st.booleans,
    "[string": lambda: st.none() | texts(8),
    "[java.lang.String": lambda: st.none() | texts(8),
}
_FIELD_NAMES = ["a", "b", "count", "items", "_v", "x1", "status"]


@functools.cache
def values(*, java: bool = False) -> st.SearchStrategy[Any]:
    """Nested values over the whole mapping (java=True: only what the Java peer can hold)."""
    keys_str = st.text(max_size=6)
    if java:  # hessian.js unwraps maps with a "$" key as its {$class, $} typed values
        keys_str = keys_str.filter(lambda k: not k.startswith("$"))
    keys_int = st.integers(INT_MIN, INT_MAX)

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        lists = st.lists(children, max_size=9)
        str_maps = st.dictionaries(keys_str, children, max_size=5)
        options = [
            lists, st.tuples(children, children), str_maps,
            st.dictionaries(keys_int, children, max_size=5),
            st.builds(TypedList, st.sampled_from(["[object", "java.util.LinkedList"]), lists),
            st.builds(TypedMap, st.sampled_from(["java.util.TreeMap", "java.util.LinkedHashMap"]),
                      str_maps),
            st.builds(JavaObject, st.sampled_from(["com.example.Thing", "x.Y$Z"]),
                      st.dictionaries(st.sampled_from(_FIELD_NAMES), children, max_size=4)),
            st.builds(Person, st.none() | texts(8), st.integers(INT_MIN, INT_MAX),
                      st.none() | st.lists(texts(5), max_size=3)),
            st.frozensets(texts(5), max_size=4),
        ]  # fmt: skip
        options += [
            st.builds(TypedList, st.just(name), st.lists(make(), max_size=9))
            for name, make in _ARRAYS.items()
        ]
        if not java:
            options.append(
                st.builds(JavaException, st.just("java.lang.IllegalStateException"),
                          st.fixed_dictionaries({"detailMessage": st.none() | texts(8),
                                                 "stackTrace": st.builds(list)}))
            )  # fmt: skip
        return st.one_of(options)

    return st.recursive(leaves(java=java), extend, max_leaves=12)


@st.composite
def graphs(draw: st.DrawFn, *, java: bool = False) -> list[Any]:
    """A list of values with extra edges added: shared and circular references."""
    root: list[Any] = draw(st.lists(values(java=java), min_size=1, max_size=4))
    holders = [c for c in _walk(root) if _can_hold(c)]
    for i in range(draw(st.integers(0, 4))):
        source = draw(st.sampled_from(holders))
        target = draw(st.sampled_from(holders))
        if isinstance(source, list):
            source.append(target)
        elif isinstance(source, dict):
            int_keys = any(type(k) is int for k in source)
            source[i - 1000 if int_keys else f"ref{i}"] = target
        elif isinstance(source, JavaObject) and not java:
            source.fields[f"ref{i}"] = target
    return root


def _walk(value: Any) -> list[Any]:
    seen: dict[int, Any] = {}
    stack = [value]
    while stack:
        v = stack.pop()
        if not _is_container(v) or id(v) in seen:
            continue
        seen[id(v)] = v
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, JavaObject | JavaException):
            stack.extend(v.fields.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return list(seen.values())


def _can_hold(c: Any) -> bool:
    if isinstance(c, TypedList):
        return c.java_type in ("[object", "java.util.LinkedList")
    return isinstance(c, list | dict | JavaObject) and not isinstance(c, JavaException)


# ---------------------------------------------------------------- peers
def peers_dir() -> Path:
    """The folder setup_peers.sh built; fails the test (never skips) when it is missing."""
    path = Path(os.environ.get("SOFAMESH_PEERS_DIR", REPO / "build" / "peers"))
    needed = [
        path / "java" / "hv.sh",
        path / "java" / "vectors" / "manifest.jsonl",
        path / "node" / "node_modules" / "hessian.js" / "package.json",
    ]
    if not all(p.is_file() for p in needed):
        pytest.fail(
            f"Hessian peers not found in {path}: build them with "
            f"`bash ../shared/peers/bolt/setup_peers.sh {path}` or set SOFAMESH_PEERS_DIR",
            pytrace=False,
        )
    return path


def manifest(peers: Path) -> list[dict[str, Any]]:
    lines = (peers / "java" / "vectors" / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def java_read(peers: Path, files: list[Path]) -> list[dict[str, Any]]:
    """Java's canonical dump of every value in `files` (one JVM for all of them)."""
    out = run([str(peers / "java" / "hv.sh"), "read", *map(str, files)])
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def java_reencode(peers: Path, file: Path) -> bytes:
    """Java decodes every value in `file` and writes them back into one stream."""
    out = run([str(peers / "java" / "hv.sh"), "reencode", str(file)])
    return bytes.fromhex(out.strip().splitlines()[-1])


def node_env(peers: Path) -> dict[str, str]:
    return {**os.environ, "NODE_PATH": str(peers / "node" / "node_modules")}


# ---------------------------------------------------------------- Java's canonical dump
def epoch_ms(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


_ARRAY_CLASSES = {
    "[int": "[I", "[long": "[J", "[double": "[D", "[boolean": "[Z", "[short": "[S",
    "[float": "[F", "[char": "[C", "[string": "[Ljava.lang.String;",
    "[java.lang.String": "[Ljava.lang.String;", "[object": "[Ljava.lang.Object;",
}  # fmt: skip


def java_dump(values: list[Any]) -> list[Any]:
    """HessianVectors.Dumper applied to decoded Python values: what Java would print.

    Doubles keep only their bits (Java's Double.toString is not reproduced).
    """
    ids: dict[int, int] = {}
    keep: list[Any] = []

    def dump(v: Any) -> Any:
        if v is None:
            return {"t": "null"}
        if isinstance(v, bool):
            return {"t": "bool", "v": v}
        if isinstance(v, Long):
            return {"t": "long", "v": int(v)}
        if isinstance(v, int):
            return {"t": "int", "v": int(v)}
        if isinstance(v, float):
            return {"t": "double", "bits": struct.pack(">d", v).hex()}
        if isinstance(v, str):
            return {"t": "string", "len": len(v.encode("utf-16-le", "surrogatepass")) // 2, "v": v}
        if isinstance(v, bytes):
            return {"t": "bytes", "len": len(v), "hex": v.hex()}
        if isinstance(v, datetime):
            return {
                "t": "date",
                "ms": (v - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(0, 0, 0, 1),
            }
        if id(v) in ids:
            return {"t": "ref", "id": ids[id(v)]}
        ids[id(v)] = len(ids)
        keep.append(v)
        node: dict[str, Any] = {"id": ids[id(v)]}
        if isinstance(v, list):
            java_type = getattr(v, "java_type", None)
            if java_type in _ARRAY_CLASSES:
                node.update(t="array", **{"class": _ARRAY_CLASSES[java_type]})
            else:
                node.update(t="list", **{"class": java_type or "java.util.ArrayList"})
            node["items"] = [dump(x) for x in v]
        elif isinstance(v, dict):
            node.update(t="map", **{"class": getattr(v, "java_type", "java.util.HashMap")})
            entries = [[dump(k), dump(x)] for k, x in v.items()]
            node["entries"] = sorted(entries, key=lambda e: _java_json(e[0]))
        else:
            node.update(t="object", **{"class": v.class_name})
            node["fields"] = {k: dump(x) for k, x in v.fields.items()}
        return node

    return [dump(v) for v in values]


def _java_json(node: Any) -> str:
    """The dump's text exactly as HessianVectors prints it (it sorts map entries by it)."""
    if isinstance(node, dict):
        return "{" + ",".join(f"{_java_str(k)}:{_java_json(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_java_json(v) for v in node) + "]"
    if isinstance(node, str):
        return _java_str(node)
    return json.dumps(node)


def _java_str(text: str) -> str:
    units = text.encode("utf-16-be", "surrogatepass")
    out = []
    for i in range(0, len(units), 2):
        c = int.from_bytes(units[i : i + 2], "big")
        if c in (0x22, 0x5C):
            out.append("\\" + chr(c))
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\u{c:04x}")
    return '"' + "".join(out) + '"'


def without_double_text(node: Any) -> Any:
    """Drop Java's Double.toString text, keeping the bits, everywhere in a dump."""
    if isinstance(node, dict):
        if node.get("t") == "double":
            return {"t": "double", "bits": node["bits"]}
        return {k: without_double_text(v) for k, v in node.items()}
    if isinstance(node, list):
        return [without_double_text(v) for v in node]
    return node


# ---------------------------------------------------------------- hessian.js's reading
def same_js(expected: Any, dumped: dict[str, Any]) -> None:
    """Assert that hessian.js read `expected` (hessianjs_dump.js format, no type info)."""
    table: dict[int, dict[str, Any]] = {}
    stack = [dumped]
    while stack:
        node = stack.pop()
        if node["t"] == "list":
            table[node["id"]] = node
            stack.extend(node["items"])
        elif node["t"] == "obj":
            table[node["id"]] = node
            stack.extend(v for _, v in node["entries"])
    _SameJs(table).check(expected, dumped, "$")


class _SameJs:
    def __init__(self, table: dict[int, dict[str, Any]]) -> None:
        self.table = table
        self.memo: dict[int, int] = {}

    def check(self, e: Any, node: dict[str, Any], path: str) -> None:
        if node["t"] == "ref":
            node = self.table[node["id"]]
        if _is_container(e) or isinstance(e, decimal.Decimal | enum.Enum):
            if id(e) in self.memo:
                assert self.memo[id(e)] == node.get("id"), (
                    f"{path}: sharing differs {e!r:.300} {node!r:.300} {self.memo[id(e)]}"
                )
                return
            self.memo[id(e)] = node.get("id", -1)
            self.container(e, node, path)
            return
        assert node == self.scalar(e) or self.same_number(e, node), f"{path}: {e!r} vs {node}"

    def scalar(self, e: Any) -> dict[str, Any]:
        if e is None:
            return {"t": "null"}
        if isinstance(e, bool):
            return {"t": "bool", "v": e}
        if isinstance(e, int):
            if abs(e) > (1 << 53) - 1:  # hessian.js gives unsafe longs as decimal strings
                return {"t": "str", "v": str(int(e))}
            return {"t": "num", "v": str(int(e))}
        if isinstance(e, str):
            return {"t": "str", "v": str(e)}
        if isinstance(e, bytes | bytearray | memoryview):
            return {"t": "bin", "hex": bytes(e).hex()}
        if isinstance(e, datetime):
            return {
                "t": "date",
                "ms": (e - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(0, 0, 0, 1),
            }
        return {"t": "?", "v": repr(e)}

    def same_number(self, e: Any, node: dict[str, Any]) -> bool:
        if node["t"] != "num" or isinstance(e, bool) or not isinstance(e, float):
            return False
        got = -0.0 if node["v"] == "-0" else float(node["v"])
        return _same_float(float(e), got)

    def container(self, e: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(e, list | tuple | set | frozenset):
            assert node["t"] == "list" and len(node["items"]) == len(e), f"{path}: {node}"
            for i, (x, n) in enumerate(zip(e, node["items"], strict=True)):
                self.check(x, n, f"{path}[{i}]")
            return
        if isinstance(e, dict):
            fields = {str(k): v for k, v in e.items()}
        elif isinstance(e, decimal.Decimal):
            fields = {"value": str(e)}
        elif isinstance(e, enum.Enum | JavaEnum):
            fields = {"name": e.name}
        elif dataclasses.is_dataclass(e):
            fields = {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}
        else:
            fields = dict(e.fields)
        assert node["t"] == "obj", f"{path}: {node}"
        got = dict(node["entries"])
        assert sorted(got) == sorted(fields), f"{path}: keys {sorted(got)} != {sorted(fields)}"
        for key, value in fields.items():
            self.check(value, got[key], f"{path}[{key!r}]")
