"""TCP byte streams for every transport: anyio's, or on asyncio a leaner one of our own.

This module (with `loop_stream.py`) is the one place sofamesh touches asyncio
directly, on purpose and measured (docs/performance.md). Everywhere else a
stream is an `anyio.abc.SocketStream` and I/O goes through anyio.

Why: anyio's asyncio stream pays, on every `send`, a shielded cancel scope and
one more trip round the event loop, and on every `receive` a resume and a
pause of the transport's reading (two `epoll_ctl` calls on uvloop). A proxied
HTTP request does two of each: about 19 us of CPU per request on uvloop,
as much as a whole pass-through proxy on raw asyncio protocols. `LoopStream`
(`loop_stream.py`, re-exported here) keeps the loop's transport reading (up to
`READ_LIMIT` buffered), hands `send` straight to the transport, and waits only
when there is nothing to read or the transport's write buffer is over its
high-water mark. This module hands out the stream each backend gets (connect,
accept) and the calls that treat a `LoopStream` cheaper than anyio's.

What stays the same, so the rest of the code cannot tell the difference:
anyio's exceptions (`EndOfStream`, `BrokenResourceError`,
`ClosedResourceError`, `BusyResourceError`), cancellation by anyio's cancel
scopes (a wait is a plain future, which anyio cancels like any other), and
the socket's extra attributes. What differs: `send` and a `receive` that finds
data buffered do not yield to the loop (a receive does after
`_YIELD_EVERY` immediate returns in a row, so one busy connection cannot
starve the others). On trio, anyio's own streams are used: they are already
a thin layer over trio's sockets, and asyncio is not imported at all: this
module asks for the running loop only if asyncio is loaded, and `LoopProtocol`
(an `asyncio.Protocol`) is bound by `lazy_module`, run where the first
`LoopStream` is made.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc

from sofamesh.lazy_imports import lazy_module
from sofamesh.transport.loop_stream import CLOSE_LINGER as CLOSE_LINGER
from sofamesh.transport.loop_stream import READ_LIMIT as READ_LIMIT
from sofamesh.transport.loop_stream import WRITE_HIGH_WATER as WRITE_HIGH_WATER
from sofamesh.transport.loop_stream import LoopStream as LoopStream

if TYPE_CHECKING:
    import asyncio

    from sofamesh.transport import loop_protocol
else:  # run where the first stream is made on asyncio; never on trio
    loop_protocol = lazy_module("sofamesh.transport.loop_protocol")

log = logging.getLogger("sofamesh.transport")


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop we run on, or None on any other backend (trio)."""
    module = sys.modules.get("asyncio")
    if module is None:  # never imported, so not running: trio, which does not import it
        return None
    try:
        loop: asyncio.AbstractEventLoop = module.get_running_loop()
    except RuntimeError:
        return None
    return loop


async def connect_tcp(host: str, port: int) -> anyio.abc.SocketStream:
    """A TCP connection (Nagle off, like anyio's), on the running backend's fastest stream."""
    loop = running_loop()
    if loop is None:
        return await anyio.connect_tcp(host, port)
    transport, protocol = await loop.create_connection(loop_protocol.LoopProtocol, host, port)
    return LoopStream(loop, transport, protocol)


class Accepted:
    """A connection just taken off a listener; `open()` it in the task that serves it.

    Accepting stays cheap this way: a burst of connections (a load balancer's
    pool, a client's 50 at once) is taken off the listen queue in one go, and
    each connection's stream is set up in its own task rather than one loop
    round after another in the accept loop.
    """

    __slots__ = ("_loop", "_sock", "_stream")

    def __init__(
        self,
        stream: anyio.abc.SocketStream | None,
        sock: socket.socket | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._stream, self._sock, self._loop = stream, sock, loop

    async def open(self) -> anyio.abc.SocketStream:
        """The connection's stream (OSError if the peer is already gone)."""
        if self._stream is not None:
            return self._stream
        assert self._sock is not None and self._loop is not None
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport, protocol = await self._loop.connect_accepted_socket(
                loop_protocol.LoopProtocol, self._sock
            )
        except BaseException:
            self._sock.close()
            raise
        return LoopStream(self._loop, transport, protocol)


async def accept(listener: anyio.abc.Listener[Any]) -> Accepted:
    """The next connection from `listener` (see `acceptor`)."""
    return await acceptor(listener)()


def acceptor(listener: anyio.abc.Listener[Any]) -> Callable[[], Awaitable[Accepted]]:
    """What takes the next connection from `listener`, each time it is awaited.

    On asyncio the listening socket is read directly, without waiting while a
    connection is queued (anyio's listener waits for the loop on each one and
    wraps it in its own stream); anything else, and any listener that is not a
    TCP socket, goes through `listener.accept()`. The socket is looked up once:
    anyio's look-up costs a failed `getpeername` each time, a tenth of an accept.
    """
    loop = running_loop()
    raw = listener.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if loop is None or raw is None or raw.family not in (socket.AF_INET, socket.AF_INET6):
        # Every leaf listener the servers pass (a SocketListener or a test's) has accept().
        return lambda: _anyio_accept(cast(anyio.abc.SocketListener, listener))
    return lambda: _accept_raw(loop, raw)


async def _anyio_accept(listener: anyio.abc.SocketListener) -> Accepted:
    return Accepted(await listener.accept())


async def _accept_raw(loop: asyncio.AbstractEventLoop, raw: socket.socket) -> Accepted:
    try:
        client, _ = raw.accept()
    except BlockingIOError:
        client = await _wait_accept(loop, raw)
    except OSError as exc:
        if raw.fileno() < 0:  # the listener was closed under us
            raise anyio.ClosedResourceError from exc
        raise
    client.setblocking(False)
    return Accepted(None, client, loop)


async def serve_accepted(
    accepted: Accepted, handler: Callable[[anyio.abc.SocketStream], Awaitable[None]]
) -> None:
    """Open `accepted` and hand its stream to `handler` (a server's per-connection task)."""
    try:
        stream = await accepted.open()
    except OSError as exc:
        log.debug("a connection was lost before it could be served: %r", exc)
        return
    await handler(stream)


async def _wait_accept(loop: asyncio.AbstractEventLoop, raw: socket.socket) -> socket.socket:
    try:
        client, _ = await loop.sock_accept(raw)
    except OSError as exc:
        if raw.fileno() < 0:
            raise anyio.ClosedResourceError from exc
        raise
    except BaseException:
        # bpo-41317: a cancelled sock_accept leaves its reader registered (caught here as
        # any BaseException: asyncio's CancelledError, without naming asyncio).
        with contextlib.suppress(ValueError, NotImplementedError):
            loop.remove_reader(raw)
        raise
    return client


def try_send(stream: anyio.abc.ByteStream, data: bytes) -> bool:
    """Write `data` at once if `stream` is a `LoopStream` that would not wait (True); False:
    nothing was written, `await stream.send(data)`. Saves a coroutine per message."""
    return type(stream) is LoopStream and stream.try_send(data)


def abort(stream: anyio.abc.AsyncResource) -> bool:
    """Close `stream` at once if it is a `LoopStream` (True); False: close it the anyio way."""
    if type(stream) is LoopStream:
        stream.abort()
        return True
    return False


async def aclose_forcefully(stream: anyio.abc.AsyncResource) -> None:
    """`anyio.aclose_forcefully`, without a cancel scope for a `LoopStream`."""
    if not abort(stream):
        await anyio.aclose_forcefully(stream)


class _Limit:
    """`time_limit` for a `LoopStream`: sets its deadline, clears it on the way out."""

    __slots__ = ("_seconds", "_stream")

    def __init__(self, stream: LoopStream, seconds: float) -> None:
        self._stream = stream
        self._seconds = seconds

    def __enter__(self) -> None:
        stream = self._stream
        stream.deadline = stream._loop.time() + self._seconds

    def __exit__(self, *exc_info: object) -> None:
        self._stream.deadline = math.inf


def time_limit(stream: anyio.abc.ByteStream, seconds: float | None) -> AbstractContextManager[Any]:
    """Within the block, `stream`'s waits raise TimeoutError once `seconds` have passed.

    A `LoopStream` does it with one lazily armed timer; any other stream gets
    a cancel scope with a deadline (as `anyio.fail_after`), with the same TimeoutError.
    """
    if seconds is None:
        return contextlib.nullcontext()
    under = loop_stream_of(stream)
    if under is not None:
        return _Limit(under, seconds)
    return _ScopeLimit(seconds)


def loop_stream_of(stream: anyio.abc.ByteStream) -> LoopStream | None:
    """The `LoopStream` all of `stream`'s waits happen in (itself, or the one under a TLS
    stream), whose `deadline` then bounds them; None for any other stream (trio's)."""
    if type(stream) is LoopStream:
        return stream
    under: LoopStream | None = getattr(stream, "loop_stream", None)
    return under


class _ScopeLimit:
    """`anyio.fail_after` without its generator machinery (about 4 us less per use on trio)."""

    __slots__ = ("_scope",)

    def __init__(self, seconds: float) -> None:
        self._scope = anyio.CancelScope(deadline=anyio.current_time() + seconds)

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        swallowed = self._scope.__exit__(exc_type, exc, tb)
        if self._scope.cancelled_caught:
            raise TimeoutError
        return bool(swallowed)
