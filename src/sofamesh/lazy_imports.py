"""Modules imported on the first read of one of their names, for what an idle process never runs.

`lazy_module("h11")` puts the module in `sys.modules` without running it; the
first read of one of its names runs it and makes it a plain module, so later reads
cost what a read of any module's global costs: no frame, no check. A module that
is already imported is returned as it is. For type checkers, import the module
under `TYPE_CHECKING` and bind it with `lazy_module` otherwise.

Unlike importlib's `LazyLoader` (which this replaced), on Python 3.11:

- a later `import x` statement, anywhere, binds the module still unrun: the import
  system reads only its `__spec__` to see whether it is being imported, and that
  read is not a use. So a module some library imports at its top and uses on one
  path only (trio's `hmac`, `idna`, `shutil`: sidecar/footprint.py) can wait;
- the first use runs it once, whichever thread reads first: a read from another
  thread waits until it has run (importlib's lazy module lets that thread see it
  half run before Python 3.12), and a read from the thread running it (its own
  code, or a module it imports that imports it back) sees it as it stands, as a
  circular import would.

If running it raises, the error reaches the reader and the module stays unrun:
the next read tries again.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

# Per module not yet run: the lock its first use runs it under (removed once run).
_PENDING: dict[str, threading.RLock] = {}
_RUNNING: set[str] = set()  # being run now (by the thread that holds its lock)


class _Unrun(ModuleType):
    """A module bound in `sys.modules` that has not run; it becomes a `ModuleType` once it has."""

    def __getattribute__(self, name: str) -> Any:
        if name != "__spec__":  # the import system's check on `import x`: not a use
            _run(self)
        return ModuleType.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _run(self)
        ModuleType.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        _run(self)
        ModuleType.__delattr__(self, name)


def _run(module: ModuleType) -> None:
    spec = ModuleType.__getattribute__(module, "__spec__")
    lock = _PENDING.get(spec.name)
    if lock is None:
        return  # run already
    with lock:
        if type(module) is not _Unrun or spec.name in _RUNNING:
            return  # another thread ran it while this one waited; or this one runs it now
        _RUNNING.add(spec.name)
        try:
            spec.loader.exec_module(module)
        finally:
            _RUNNING.discard(spec.name)
        ModuleType.__setattr__(module, "__class__", ModuleType)
        del _PENDING[spec.name]


def lazy_module(name: str) -> ModuleType:
    """`name` as a module that runs on its first name read; ModuleNotFoundError if absent."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    module = importlib.util.module_from_spec(spec)
    _PENDING[name] = threading.RLock()
    ModuleType.__setattr__(module, "__class__", _Unrun)
    sys.modules[name] = module
    return module


def is_loaded(name: str) -> bool:
    """Whether `name` has run (not merely been bound by `lazy_module`)."""
    module = sys.modules.get(name)
    return module is not None and type(module) is not _Unrun
