"""What every server does with a listener: accept until it closes, a task per connection."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from sofamesh.transport.streams import accept, serve_accepted

log = logging.getLogger("sofamesh.transport")

ACCEPT_ERROR_PAUSE = 0.1  # seconds before accepting again after EMFILE and friends


async def accept_until_closed(
    listener: anyio.abc.Listener[Any],
    tg: anyio.abc.TaskGroup,
    handler: Callable[[anyio.abc.SocketStream], Awaitable[None]],
    protocol: str,
) -> None:
    """Serve each connection from `listener` with `handler`, in `tg`, until the listener closes.

    An accept that fails (out of file descriptors, say) is logged and retried
    after a pause: the server slows down instead of stopping, and the
    connections it already has keep being served.
    """
    while True:
        try:
            accepted = await accept(listener)
        except anyio.ClosedResourceError:
            return
        except OSError as exc:
            log.warning("%s accept failed: %s", protocol, exc)
            await anyio.sleep(ACCEPT_ERROR_PAUSE)
            continue
        tg.start_soon(serve_accepted, accepted, handler)
