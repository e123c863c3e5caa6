"""JSON documents from peers, read within explicit limits: size and nesting (sans-IO).

`json.loads` takes any size and recurses once per level of nesting, so a body of
`[[[[...` a few kilobytes long raises `RecursionError` from deep inside the parser.
Every JSON a peer sends the sidecar's registry APIs or the admission webhook is read
here instead: too large, too deep, or not JSON at all is one `JsonDocError` (a
`ValueError`) naming the limit, which the caller answers with a 4xx.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # a registration or a pod spec nests about 10 levels


class JsonDocError(ValueError):
    """A peer's JSON is not JSON, or is larger or deeper than the limit."""


def loads(data: bytes | str, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The document in `data`: at most `max_bytes` long and `max_depth` containers deep."""
    if len(data) > max_bytes:
        raise JsonDocError(f"the document is {len(data)} bytes, above the limit of {max_bytes}")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise JsonDocError(f"the document nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonDocError(f"not JSON: {exc}") from None
    check_depth(doc, max_depth)
    return doc


def check_depth(doc: Any, max_depth: int) -> None:
    """Raise `JsonDocError` if `doc` has containers nested deeper than `max_depth`.

    Walked with a stack of its own, so a deep document cannot exhaust Python's.
    """
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise JsonDocError(f"the document nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
