"""What a service manager needs to follow the sidecar across an in-place upgrade.

`notify`: systemd's readiness protocol (sd_notify(3)), when the sidecar runs under
`Type=notify`: `READY=1` once serving, and after an upgrade `MAINPID=` naming the new
process, so the manager keeps following the service when the old process exits
(the unit needs `NotifyAccess=all`, as the new process is not the main one yet).

`run_detached`: `--upgrade --detach` for `ExecReload=`: start the new sidecar as a
process of its own, wait for its READY line (the old one has been told to go), print
it and exit 0; or exit with the new process's status if it failed, the old one serving.
"""

from __future__ import annotations

import os
import subprocess
import sys

import anyio


async def notify(state: str) -> None:
    """Send `state` to $NOTIFY_SOCKET if the service manager set one (else do nothing)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):  # an abstract socket: its name starts with a NUL byte
        path = "\0" + path[1:]
    try:
        async with await anyio.create_connected_unix_datagram_socket(path) as sock:
            await sock.send(state.encode())
    except OSError:
        pass  # the manager went away; nothing to tell


def run_detached(argv: list[str]) -> int:
    """Run `python -m sofamesh.sidecar ARGV` on its own; return once it is ready (0) or gone."""
    child = subprocess.Popen(
        [sys.executable, "-m", "sofamesh.sidecar", *argv],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # outlives this command and its terminal
    )
    assert child.stdout is not None
    line = child.stdout.readline().decode()
    child.stdout.close()  # the sidecar prints nothing after READY
    if line.startswith("SOFAMESH READY "):
        print(line, end="", flush=True)
        return 0
    return child.wait() or 1
