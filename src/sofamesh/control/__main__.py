"""`python -m sofamesh.control -c control.yaml` (or `sofamesh-control`): run until SIGTERM.

Prints `SOFAMESH CONTROL READY {"listen": "HOST:PORT"}` on stdout once serving.
Exit status: 0 after SIGTERM, 2 for a bad configuration (every problem with its
path), 1 for anything else fatal.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

import anyio
import anyio.abc

from sofamesh.config import ConfigError
from sofamesh.control.app import ControlPlane
from sofamesh.control.config import ControlConfig, load_control_config
from sofamesh.observability.logs import configure_logging

log = logging.getLogger("sofamesh.control")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sofamesh-control", description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", help="YAML or JSON config file (default: all defaults)")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="json: one object per line"
    )
    return p.parse_args(argv)


def _tell_password(password: str) -> None:
    # Once, on the first start only: the store keeps only its hash.
    print(f"sofamesh-control: generated admin password (shown once): {password}", file=sys.stderr)


async def _serve(config: ControlConfig) -> None:
    cp = ControlPlane(config, on_password=_tell_password)
    async with anyio.create_task_group() as tg:
        await tg.start(cp.run)
        await tg.start(_stop_on_signal, cp)
        print("SOFAMESH CONTROL READY " + json.dumps({"listen": str(cp.bound)}), flush=True)


async def _stop_on_signal(
    cp: ControlPlane, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("received %s: stopping", signal.Signals(signum).name)
            cp.stop()
            return


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging(args.log_level.upper(), args.log_format)
    try:
        config = load_control_config(args.config)
    except ConfigError as e:
        print(f"sofamesh-control: {e}", file=sys.stderr)
        return 2
    anyio.run(_serve, config, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
