"""Small helpers every benchmark shares: free loopback ports and waiting for a listener."""

from __future__ import annotations

import argparse
import os
import socket
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Return once something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def add_baseline_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also run a sidecar from another checkout's src/ (e.g. a worktree of the previous"
        " release), as the path 'sofamesh @ baseline': before and after in one run",
    )


def src_env(src: str | None) -> dict[str, str] | None:
    """The environment for a sidecar run from `src` (a checkout's src/), or None for this one."""
    if src is None:
        return None
    return {**os.environ, "PYTHONPATH": os.path.abspath(src)}
