"""`python -m sofamesh.testing KIND module:attr --service S`: an app object in a process.

KIND is `asgi` (an ASGI app), `grpc` (a grpclib servicer, or a list of them) or `bolt`
(an object whose methods serve a SOFARPC interface). A class is instantiated first.

With the default `--registry memory://` nothing outside this process sees it: a plain
upstream app, meant to sit behind a sidecar. With a shared registry it is an SDK provider
in a process of its own (which a test can SIGKILL). Prints `READY {"port": N}` once serving,
then runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

import anyio

from sofamesh.testing.upstream import KINDS, load_target, serve


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
    p = argparse.ArgumentParser(prog="python -m sofamesh.testing")
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
