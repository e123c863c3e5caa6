"""`python -m sofamesh.sidecar -c mesh.yaml` (or `sofamesh-sidecar`): run the sidecar until SIGTERM.

With `--upgrade`, the new process takes the listening sockets over from the
running sidecar of the same app (through its `upgrade_socket`), serves, and
only then tells the old one to drain and exit (docs/operations.md). If the
upgrade fails, the running sidecar keeps serving. With `workers: N` (N > 1) this
process is the main one and starts N workers (`--worker FD`, an internal flag:
sidecar/supervisor.py).

Exit status: 0 after a clean drain (or a good configuration, with `--check`), 2 for
a bad configuration, command line or rules document at start (one message listing
every problem with its path), 1 for anything else fatal (a busy port, a file that
cannot be written: one line naming the cause).
"""

# ruff: noqa: E402  (the process is set up before the mesh's modules load)
from __future__ import annotations

from sofamesh.sidecar.footprint import (
    HelpFormatter,
    defer_trio_imports,
    keep_no_generated_source,
)

keep_no_generated_source()

import argparse
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path

import anyio
import anyio.abc

from sofamesh._version import __version__
from sofamesh.clock import MonotonicClock
from sofamesh.config import ConfigError, MeshConfig, load_config
from sofamesh.observability.access_log import listener_access_logs
from sofamesh.observability.logs import configure_logging
from sofamesh.sidecar.app import Sidecar
from sofamesh.sidecar.errors import describe
from sofamesh.sidecar.log_levels import log_level
from sofamesh.sidecar.systemd import notify, run_detached
from sofamesh.sidecar.upgrade import take_over
from sofamesh.transport.heap import trim_heap

log = logging.getLogger("sofamesh.sidecar")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=_prog(), description=__doc__.split("\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("-c", "--config", help="YAML or JSON config file (default: $SOFAMESH_CONFIG)")
    p.add_argument(
        "--check", action="store_true", help="validate the configuration and exit (0 good, 2 bad)"
    )
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="take the listeners over from the running sidecar (its upgrade_socket), then "
        "let it drain and exit",
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="with --upgrade: run the new sidecar on its own and return once it serves "
        "(for systemd's ExecReload=)",
    )
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    p.add_argument(
        "--no-uvloop", action="store_true", help="on asyncio, do not use uvloop even if installed"
    )
    p.add_argument(
        "--log-level", type=_level_arg, default="info", help="debug, info, warning, error, critical"
    )
    p.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="json: one object per line"
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # A worker of a sidecar with `workers: N`, started by its main process (sidecar/workers.py).
    p.add_argument("--worker", type=int, metavar="FD", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _prog() -> str:
    """The name the user typed: the console script's, or `python -m sofamesh.sidecar`."""
    name = Path(sys.argv[0]).name
    return "python -m sofamesh.sidecar" if name in ("__main__.py", "") else name


def _level_arg(value: str) -> int:
    try:
        return log_level(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


async def _serve(
    config: MeshConfig, upgrade: bool = False, workers: list[str] | None = None
) -> None:
    takeover = await take_over(config) if upgrade else None
    try:
        if config.workers > 1 and workers is not None:
            # The workers' machinery (0.3 MB) loads only in a sidecar that has workers.
            from sofamesh.sidecar.supervisor import Supervisor

            await _run(Supervisor(config, workers, upgrades=True, takeover=takeover))
        else:
            await _run(Sidecar(config, upgrades=True, takeover=takeover))
    finally:
        if takeover is not None:  # before it was ready: the running sidecar serves on
            await takeover.channel.aclose()


async def _run(sidecar: Sidecar) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(sidecar.run)
        await tg.start(_stop_on_signal, sidecar)
        # One machine-readable line on stdout for supervisors and tests (logs go to stderr),
        # printed once listeners serve and signals are handled.
        _settle_gc()
        bound = {k: str(v) for k, v in sidecar.bound.items()}
        print("SOFAMESH READY " + json.dumps(bound), flush=True)
        # Under systemd (Type=notify): ready, and after an upgrade, the service's process.
        await notify(f"READY=1\nMAINPID={os.getpid()}" if sidecar.takeover else "READY=1")
        await sidecar.wait_stopped()  # run() returns after draining
        tg.cancel_scope.cancel()


def _settle_gc() -> None:
    """Keep the cyclic GC off the request path's tail latency.

    Everything built at start-up (config, modules, listeners) lives as long as
    the process: `gc.freeze` moves it out of the collector's view, so full
    collections stop rescanning it. The first generation's threshold is raised,
    since a proxied request allocates a few hundred short-lived objects that
    reference counting alone frees. What start-up freed (the config's parse,
    import-time buffers) goes back to the OS: about 0.5 MB of an idle sidecar.
    """
    gc.collect()
    trim_heap()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _stop_on_signal(
    sidecar: Sidecar, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:  # logrotate's signal: access-log files reopened
                sidecar.reopen_logs()
                continue
            log.info("received %s: draining", signal.Signals(signum).name)
            sidecar.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse_args(argv)
    if args.detach:
        if not args.upgrade:
            print("sofamesh.sidecar: --detach goes with --upgrade", file=sys.stderr)
            return 2
        return run_detached([a for a in argv if a != "--detach"])
    configure_logging(args.log_level, args.log_format)
    if args.worker is not None:
        return _run_worker(args)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"sofamesh.sidecar: {_failed(args)}{e}", file=sys.stderr)
        return 2
    if args.check:
        _, problems = listener_access_logs(config, MonotonicClock())
        if problems:
            print(f"sofamesh.sidecar: {ConfigError(problems)}", file=sys.stderr)
            return 2
        source = args.config or os.environ.get("SOFAMESH_CONFIG") or "defaults"
        print(f"sofamesh.sidecar: configuration OK ({source})")
        return 0
    backend_options = _backend_options(args)
    workers = _worker_argv(config, args, backend_options)
    try:
        anyio.run(
            _serve, config, args.upgrade, workers,
            backend=args.backend, backend_options=backend_options,
        )  # fmt: skip
    except Exception as e:
        known = describe(e)
        if known is None:
            raise  # a bug: its traceback is what a report needs
        status, message = known
        print(f"sofamesh.sidecar: {_failed(args)}{message}", file=sys.stderr)
        return status
    return 0


def _backend_options(args: argparse.Namespace) -> dict[str, object]:
    """What `anyio.run` is given for `args.backend`; on trio, what trio imports and an idle
    sidecar never runs is bound to run on first use before trio loads (`footprint.py`)."""
    if args.backend == "trio":
        defer_trio_imports()
    if args.backend == "asyncio" and not args.no_uvloop:
        try:
            import uvloop  # noqa: F401

            return {"use_uvloop": True}
        except ImportError:
            pass
    return {}


def _worker_argv(
    config: MeshConfig, args: argparse.Namespace, backend_options: dict[str, object]
) -> list[str] | None:
    """How the main process starts each worker; None for a sidecar without workers."""
    if config.workers <= 1:
        return None
    from sofamesh.sidecar.supervisor import worker_argv

    uvloop = "use_uvloop" in backend_options
    return worker_argv(args.backend, uvloop, args.log_level, args.log_format)


def _run_worker(args: argparse.Namespace) -> int:
    from sofamesh.sidecar.worker import serve_worker  # a worker process only

    anyio.run(serve_worker, args.worker, _settle_gc, backend=args.backend,
              backend_options=_backend_options(args))  # fmt: skip
    return 0


def _failed(args: argparse.Namespace) -> str:
    return "upgrade failed, the running sidecar keeps serving: " if args.upgrade else ""


if __name__ == "__main__":
    sys.exit(main())
