"""A JSON Patch (RFC 6902) that turns one JSON document into another.

Mappings are compared key by key, so a patch touches only what changed (an
annotation, `spec.initContainers`); any other changed value, lists included, is
replaced whole, which keeps the patch exact whatever the list's edits were. Keys
are escaped as RFC 6901 JSON Pointer says (`~` as `~0`, `/` as `~1`): annotation
names contain slashes.
"""

from __future__ import annotations

from typing import Any

Op = dict[str, Any]


def pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def diff(before: Any, after: Any, path: str = "") -> list[Op]:
    """The operations that make `before` equal to `after` (both JSON values)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return _diff_mappings(before, after, path)
    if before == after and type(before) is type(after):
        return []
    if not path:  # the whole document differs: RFC 6902 allows replacing the root
        return [{"op": "replace", "path": "", "value": after}]
    return [{"op": "replace", "path": path, "value": after}]


def _diff_mappings(before: dict[str, Any], after: dict[str, Any], path: str) -> list[Op]:
    ops: list[Op] = []
    for key in before:
        if key not in after:
            ops.append({"op": "remove", "path": f"{path}/{pointer_token(key)}"})
    for key, value in after.items():
        child = f"{path}/{pointer_token(key)}"
        if key not in before:
            ops.append({"op": "add", "path": child, "value": value})
        else:
            ops.extend(diff(before[key], value, child))
    return ops
