"""`python -m sofamesh.sidecar -c mesh.yaml`: run the sidecar until SIGTERM.

Exit status: 0 after a clean drain, 2 for a bad configuration (one message
listing every problem with its path), 1 for anything else fatal.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys

import anyio
import anyio.abc

from sofamesh.config import ConfigError, MeshConfig, load_config
from sofamesh.sidecar.app import Sidecar

log = logging.getLogger("sofamesh.sidecar")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sofamesh.sidecar", description=__doc__.split("\n")[0]
    )
    p.add_argument("-c", "--config", help="YAML or JSON config file (default: $SOFAMESH_CONFIG)")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    p.add_argument(
        "--no-uvloop", action="store_true", help="on asyncio, do not use uvloop even if installed"
    )
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def _serve(config: MeshConfig) -> None:
    sidecar = Sidecar(config)
    async with anyio.create_task_group() as tg:
        await tg.start(sidecar.run)
        await tg.start(_stop_on_signal, sidecar)
        # One machine-readable line on stdout for supervisors and tests (logs go to stderr),
        # printed once listeners serve and signals are handled.
        _settle_gc()
        bound = {k: str(v) for k, v in sidecar.bound.items()}
        print("SOFAMESH READY " + json.dumps(bound), flush=True)
        await sidecar.wait_stopped()  # run() returns after draining
        tg.cancel_scope.cancel()


def _settle_gc() -> None:
    """Keep the cyclic GC off the request path's tail latency.

    Everything built at start-up (config, modules, listeners) lives as long as
    the process: `gc.freeze` moves it out of the collector's view, so full
    collections stop rescanning it. The first generation's threshold is raised,
    since a proxied request allocates a few hundred short-lived objects that
    reference counting alone frees.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _stop_on_signal(
    sidecar: Sidecar, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("received %s: draining", signal.Signals(signum).name)
            sidecar.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"sofamesh.sidecar: {e}", file=sys.stderr)
        return 2
    backend_options: dict[str, object] = {}
    if args.backend == "asyncio" and not args.no_uvloop:
        try:
            import uvloop  # noqa: F401

            backend_options["use_uvloop"] = True
        except ImportError:
            pass
    anyio.run(_serve, config, backend=args.backend, backend_options=backend_options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
