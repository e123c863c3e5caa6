"""Serve an app object on an open mesh, whatever its kind; shared by the in-process `sdk`
provider shape and by `python -m sofamesh.testing`, which runs one in a process of its own.

Kinds: `asgi` (an ASGI app), `grpc` (a grpclib servicer, or a list of them), `bolt` (an object
whose methods serve a SOFARPC interface `interface:version`).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

KINDS = ("asgi", "grpc", "bolt")


def load_target(spec: str) -> Any:
    """The object named by `module:attr` (`attr` may be dotted); a class is instantiated."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"expected module:attr, got {spec!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if isinstance(obj, type) else obj


def split_bolt_service(service: str) -> tuple[str, str]:
    """`com.example.Echo:1.0` -> (`com.example.Echo`, `1.0`); the version defaults to 1.0."""
    interface, _, version = service.partition(":")
    return interface, version or "1.0"


@asynccontextmanager
async def serve(mesh: Any, kind: str, obj: Any, services: list[str]) -> AsyncIterator[Any]:
    """Serve `obj` as `services` on `mesh` (an open `sofamesh.Mesh`); yields the `Provider`."""
    if kind == "asgi":
        async with mesh.serve_asgi(obj, services=services) as provider:
            yield provider
    elif kind == "grpc":
        handlers = obj if isinstance(obj, list | tuple) else [obj]
        async with mesh.serve_grpc(handlers, services=services or None) as provider:
            yield provider
    elif kind == "bolt":
        interface, version = split_bolt_service(services[0])
        async with mesh.serve_bolt(obj, interface, version=version) as provider:
            yield provider
    else:
        raise ValueError(f"unknown provider kind {kind!r} (expected one of {', '.join(KINDS)})")
