"""Turn plain data (from YAML/JSON) into frozen attrs config objects, reporting every problem.

Unlike a parser that stops at the first error (or, worse, falls back to
defaults), `structure` walks the whole document and collects each problem with
its dotted path (``inbound[0].listen: expected host:port, got 'localhost'``), so
one run of a bad config tells the operator everything to fix.

Supported field types: attrs classes, str, int, float, bool, `X | None`,
`tuple[X, ...]`, `dict[str, X]`, `Literal[...]`, and any class with a
``parse(value) -> instance`` classmethod (e.g. `Address`). Unknown keys are
errors. attrs validators run per field, so their messages land on the field's
path too.
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

import attrs

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot be used; `problems` lists each one with its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class _Missing:
    pass


_MISSING = _Missing()


def structure(cls: type[T], data: Any, path: str = "") -> T:
    """Build `cls` from `data`, or raise `ConfigError` listing every problem."""
    problems: list[str] = []
    value = _convert(cls, data, path, problems)
    if problems:
        raise ConfigError(problems)
    return typing.cast(T, value)


def _where(path: str) -> str:
    return path or "(top level)"


def _convert(tp: Any, data: Any, path: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and hasattr(tp, "parse"):
        return _parse(tp, data, path, problems)
    if attrs.has(tp):
        return _convert_attrs(tp, data, path, problems)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, data, path, problems)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if data not in choices:
            problems.append(f"{_where(path)}: expected one of {list(choices)}, got {data!r}")
        return data
    if origin is tuple:
        return _convert_tuple(tp, data, path, problems)
    if origin is dict:
        return _convert_dict(tp, data, path, problems)
    if tp is Any:
        return data
    return _convert_scalar(tp, data, path, problems)


def _parse(tp: Any, data: Any, path: str, problems: list[str]) -> Any:
    try:
        return tp.parse(data)
    except ConfigError as e:  # a mapping read with `structure`: its paths are relative
        problems.extend(f"{path}.{p}" if path else p for p in e.problems)
        return _MISSING
    except (ValueError, TypeError) as e:
        problems.append(f"{_where(path)}: {e}")
        return _MISSING


def _convert_scalar(tp: Any, data: Any, path: str, problems: list[str]) -> Any:
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (int, float) and isinstance(data, bool):
        problems.append(f"{_where(path)}: expected {tp.__name__}, got a boolean")
        return _MISSING
    if not isinstance(data, tp):
        problems.append(
            f"{_where(path)}: expected {tp.__name__}, got {type(data).__name__} {data!r}"
        )
        return _MISSING
    return data


def _convert_union(tp: Any, data: Any, path: str, problems: list[str]) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if data is None and len(args) < len(typing.get_args(tp)):
        return None
    if len(args) == 1:
        return _convert(args[0], data, path, problems)
    for arg in args:
        trial: list[str] = []
        value = _convert(arg, data, path, trial)
        if not trial:
            return value
    problems.append(f"{_where(path)}: {data!r} matches none of {tp}")
    return _MISSING


def _convert_tuple(tp: Any, data: Any, path: str, problems: list[str]) -> Any:
    (item_tp, *_rest) = typing.get_args(tp)
    if isinstance(data, str) or not isinstance(data, list | tuple):
        problems.append(f"{_where(path)}: expected a list, got {type(data).__name__}")
        return ()
    return tuple(_convert(item_tp, v, f"{path}[{i}]", problems) for i, v in enumerate(data))


def _convert_dict(tp: Any, data: Any, path: str, problems: list[str]) -> Any:
    _key_tp, val_tp = typing.get_args(tp)
    if not isinstance(data, dict):
        problems.append(f"{_where(path)}: expected a mapping, got {type(data).__name__}")
        return {}
    out = {}
    for k, v in data.items():
        if not isinstance(k, str):
            problems.append(f"{_where(path)}: keys must be strings, got {k!r}")
            continue
        out[k] = _convert(val_tp, v, f"{path}.{k}" if path else k, problems)
    return out


def _convert_attrs(cls: Any, data: Any, path: str, problems: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{_where(path)}: expected a mapping, got {type(data).__name__} {data!r}")
        return _MISSING
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    aliases = {f.alias or f.name: f.name for f in fields.values()}
    for key in data:
        if key not in aliases and str(key).replace("-", "_") not in aliases:
            known = ", ".join(sorted(aliases))
            problems.append(f"{_sub(path, key)}: unknown key (known keys: {known})")
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for alias, name in aliases.items():
        raw = data.get(alias, data.get(alias.replace("_", "-"), _MISSING))
        field = fields[name]
        if raw is _MISSING:
            if field.default is attrs.NOTHING:
                problems.append(f"{_sub(path, alias)}: required")
            continue
        value = _convert(hints[name], raw, _sub(path, alias), problems)
        if value is _MISSING:
            continue
        if field.validator is not None and not _validate(field, value, _sub(path, alias), problems):
            continue
        kwargs[alias] = value
    if len(problems) > before:
        return _MISSING
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        problems.append(f"{_where(path)}: {e}")
        return _MISSING


def _validate(field: attrs.Attribute[Any], value: Any, path: str, problems: list[str]) -> bool:
    try:
        field.validator(None, field, value)  # type: ignore[misc]
    except (ValueError, TypeError) as e:
        problems.append(f"{path}: {_validator_message(e)}")
        return False
    return True


def _validator_message(e: Exception) -> str:
    # attrs' built-in validators put a tuple of details in args; keep the sentence.
    return str(e.args[0]) if e.args else str(e)


def _sub(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
