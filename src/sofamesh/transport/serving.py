"""What every server does with a listener: accept until it closes, admit, drain, count.

`accept_until_closed` is the accept loop. `ServerLifecycle` is the part of a
server that does not depend on its protocol: serving one or more listeners
(each leaf of a `MultiListener` in its own accept task), admitting connections
under `max_connections`, stopping the accept loops on `drain` and waiting for
the last connection to end, and the connection counts of `statistics()`. The
HTTP/1.1, HTTP/2 and Bolt servers each hold one and add their protocol: what a
connection is, and how a draining server lets it finish.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from sofamesh.transport.admission import EVICT_SHARE, Admission, source_of
from sofamesh.transport.streams import acceptor, aclose_forcefully, serve_accepted

log = logging.getLogger("sofamesh.transport")

ACCEPT_ERROR_PAUSE = 0.1  # seconds before accepting again after EMFILE and friends

C = TypeVar("C")
Admit = Callable[[anyio.abc.ByteStream], Awaitable[None]]


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
    next_connection = acceptor(listener)
    while True:
        try:
            accepted = await next_connection()
        except anyio.ClosedResourceError:
            return
        except OSError as exc:
            log.warning("%s accept failed: %s", protocol, exc)
            await anyio.sleep(ACCEPT_ERROR_PAUSE)
            continue
        tg.start_soon(serve_accepted, accepted, handler)


def leaves(listener: anyio.abc.Listener[Any]) -> list[anyio.abc.Listener[Any]]:
    """The listeners inside a MultiListener (what `create_tcp_listener` returns)."""
    if isinstance(listener, MultiListener):
        return [leaf for child in listener.listeners for leaf in leaves(child)]
    return [listener]


async def _nothing() -> None:
    return None


class ServerLifecycle(Generic[C]):
    """Listen, admit under `max_connections`, drain: the protocol-free half of a server.

    `conns` holds the server's live connections (its own type `C`); the server
    adds and removes them, and `admit` counts them against the limit. `serve`
    may run once per listener, concurrently; `wait_stopped` returns when the
    last `serve` has returned. `on_accept_end` runs as each accept loop stops.
    """

    def __init__(
        self,
        protocol: str,
        max_connections: int,
        *,
        on_accept_end: Callable[[], Awaitable[None]] = _nothing,
        max_per_source: int = 0,
        evict_share: float = EVICT_SHARE,
    ) -> None:
        self.protocol = protocol
        self.max_connections = max_connections
        self.admission = Admission(protocol, max_connections, max_per_source, evict_share)
        self.conns: set[C] = set()
        self.draining = False
        self.accepted = 0  # admitted since start (the rejected ones are not counted)
        self.rejected = 0  # over max_connections, closed on accept
        self._on_accept_end = on_accept_end
        self._accept_scopes: set[anyio.CancelScope] = set()
        self._serving = 0
        self._stopped: anyio.Event | None = None

    @property
    def accepting(self) -> bool:
        return bool(self._accept_scopes)

    async def serve(
        self,
        listener: anyio.abc.Listener[Any],
        admit: Admit,
        task_status: anyio.abc.TaskStatus[None],
        *,
        also: Callable[[anyio.abc.TaskGroup], None] | None = None,
    ) -> None:
        """Accept from every leaf of `listener` into `admit` until drained; close `listener`.

        `also(tg)` starts the server's own tasks (a sweeper, say) in the same group.
        """
        if not self._serving:
            self._stopped = anyio.Event()
        self._serving += 1
        try:
            async with anyio.create_task_group() as tg:
                fair = self._fair(admit)
                for leaf in leaves(listener):
                    tg.start_soon(self._accept_until_drained, leaf, tg, fair)
                if also is not None:
                    also(tg)
                task_status.started()
        finally:
            await anyio.aclose_forcefully(listener)
            self._serving -= 1
            if not self._serving and self._stopped is not None:
                self._stopped.set()

    def _fair(self, admit: Admit) -> Admit:
        """`admit`, behind the per-source limit (one frame per connection, not per request)."""
        admission = self.admission

        async def fair(stream: anyio.abc.ByteStream) -> None:
            source = source_of(stream)
            if not admission.enter(source, self.conns):
                self.rejected += 1
                await aclose_forcefully(stream)
                return
            try:
                await admit(stream)
            finally:
                admission.leave(source)

        return fair

    async def _accept_until_drained(
        self, listener: anyio.abc.Listener[Any], tg: anyio.abc.TaskGroup, admit: Admit
    ) -> None:
        with anyio.CancelScope() as scope:
            self._accept_scopes.add(scope)
            if self.draining:
                scope.cancel()
            if isinstance(listener, anyio.abc.SocketListener):
                await accept_until_closed(listener, tg, admit, self.protocol)
            else:  # not a socket (a hand-off): its own loop, without our accept-error handling
                await listener.serve(admit, task_group=tg)
        self._accept_scopes.discard(scope)
        await self._on_accept_end()
        # Stop queueing new connections now, not after the in-flight ones finish.
        await anyio.aclose_forcefully(listener)

    async def admit(self, stream: anyio.abc.ByteStream) -> bool:
        """Count a new connection in, or close it (False) when `max_connections` are open.

        Near the limit, idle connections are closed first to make room (`admission.py`).
        """
        admission = self.admission
        open_now = admission.open_count(self.conns)
        open_now -= admission.make_room(self.conns, open_now)
        if open_now >= self.max_connections:
            self.rejected += 1
            log.warning("%s: refusing a connection: %d open", self.protocol, len(self.conns))
            await aclose_forcefully(stream)
            return False
        self.accepted += 1
        return True

    def connection_counts(self) -> dict[str, Any]:
        """The fields every server's `statistics()` shares, by their names there."""
        return {
            "active_connections": len(self.conns),
            "accepted_connections": self.accepted,
            "rejected_connections": self.rejected,
            "evicted_connections": self.admission.evicted,
            "draining": self.draining,
        }

    def begin_drain(self) -> None:
        """Stop accepting; the server then lets its connections finish in its own way."""
        self.draining = True
        for scope in self._accept_scopes:
            scope.cancel()

    async def wait_stopped(self) -> None:
        """Return once every `serve` has returned (at once if none runs)."""
        if self._serving and self._stopped is not None:
            await self._stopped.wait()
