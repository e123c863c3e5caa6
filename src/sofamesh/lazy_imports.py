"""Modules imported on the first read of one of their names, for what an idle process never runs.

`lazy_module("h11")` puts a stand-in for the module in `sys.modules` (importlib's
`LazyLoader`) without running it; the first attribute read runs the module and
turns the stand-in into the module itself, so later reads cost what a read of any
module's global costs: no frame, no check. A module that is already imported is
returned as it is. For type checkers, import the module under `TYPE_CHECKING` and
bind it with `lazy_module` otherwise.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """`name` as a module that runs on its first attribute read; ModuleNotFoundError if absent."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def is_loaded(name: str) -> bool:
    """Whether `name` has run (not merely been bound by `lazy_module`)."""
    module = sys.modules.get(name)
    # Any attribute read would run it: its class (importlib's `_LazyModule`) tells.
    return module is not None and type(module).__name__ != "_LazyModule"
