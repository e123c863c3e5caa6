"""`python -m sofamesh.testing.upstream KIND module:attr`: serve an app object in a process.

KIND is `asgi` (an ASGI app), `grpc` (a grpclib servicer, or a list of them) or `bolt`
(an object whose methods serve a SOFARPC interface). A class is instantiated first.

With the default `--registry memory://` nothing outside this process sees it: a plain
upstream app, meant to sit behind a sidecar. With a shared registry it is an SDK provider
in a process of its own (which a test can SIGKILL). Prints `READY {"port": N}` once serving,
then runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

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


async def _main(args: argparse.Namespace) -> None:
    import sofamesh

    config: dict[str, Any] = {"app": args.app, "registry": args.registry}
    if args.version:
        config["metadata"] = {"version": args.version}
    obj = load_target(args.target)
    async with (
        sofamesh.open_mesh(config, env={}) as mesh,
        serve(mesh, args.kind, obj, args.service) as provider,
    ):
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            print("READY " + json.dumps({"port": provider.address.port}), flush=True)
            async for _ in signals:
                return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sofamesh.testing.upstream")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("target", help="module:attr of the app object")
    p.add_argument("--service", action="append", default=[], help="a service name (repeatable)")
    p.add_argument("--app", default="provider")
    p.add_argument("--registry", default="memory://")
    p.add_argument("--version", default="", help="published as the endpoints' version")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = p.parse_args(argv)
    anyio.run(_main, args, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
