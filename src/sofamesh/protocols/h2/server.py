"""An HTTP/2 (h2c, prior knowledge) server on any anyio listener, with HTTP/1.1 on the same port.

Each accepted connection is sniffed: the HTTP/2 preface (RFC 9113 §3.4)
makes it an `H2Connection` whose every new stream runs `handler(stream)` in
its own task; anything else goes, with the bytes already read, to the
optional `http1` server (`Http1Server`), so one port serves HTTP/1.1, h2c
and gRPC. A handler that fails resets its stream (INTERNAL_ERROR) and the
connection's other streams carry on.

`drain()` stops accepting, sends every connection a GOAWAY (NO_ERROR) so
clients open no new streams, lets the streams in flight finish, and returns
once every connection has closed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import attrs
from anyio.streams.stapled import MultiListener

from sofamesh.codecs.h2 import DEFAULT_H2_LIMITS, INTERNAL_ERROR, H2Codec, H2Limits, looks_like_h2
from sofamesh.protocols.h2.conn import H2Connection
from sofamesh.protocols.h2.stream import H2Stream, StreamResetError
from sofamesh.transport.net import STREAM_ERRORS, format_address
from sofamesh.transport.serving import accept_until_closed

log = logging.getLogger("sofamesh.h2")

H2Handler = Callable[[H2Stream], Awaitable[None]]
SNIFF_TIMEOUT = 10.0


@attrs.frozen(slots=True)
class H2ServerStatistics:
    active_connections: int
    accepted_connections: int
    rejected_connections: int
    http1_connections: int  # handed to the HTTP/1.1 server after sniffing
    streams: int  # handled so far
    handler_errors: int
    draining: bool


class H2Server:
    """Serves `handler` for every HTTP/2 stream; `http1` (optional) takes HTTP/1.1 connections."""

    def __init__(
        self,
        handler: H2Handler,
        limits: H2Limits = DEFAULT_H2_LIMITS,
        *,
        http1: Any = None,
        max_connections: int = 10_000,
        idle_timeout: float = 60.0,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.http1 = http1
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._conns: set[H2Connection] = set()
        self._draining = False
        self._accept_scopes: set[anyio.CancelScope] = set()
        self._serving = 0
        self._stopped: anyio.Event | None = None
        self._handoff: _HandoffListener | None = None
        self._accepted = self._rejected = self._http1 = self._streams = self._errors = 0

    async def serve(
        self,
        listener: anyio.abc.Listener[Any],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve until `drain` finishes; closes `listener`. Use `task_group.start`."""
        if self._stopped is None:
            self._stopped = anyio.Event()
        self._serving += 1
        try:
            async with anyio.create_task_group() as tg:
                if self.http1 is not None and self._handoff is None:
                    self._handoff = _HandoffListener()
                    tg.start_soon(self.http1.serve, self._handoff)
                for leaf in _leaves(listener):
                    tg.start_soon(self._accept_until_drained, leaf, tg)
                task_status.started()
        finally:
            await anyio.aclose_forcefully(listener)
            self._serving -= 1
            if not self._serving:
                self._stopped.set()

    async def _accept_until_drained(
        self, listener: anyio.abc.Listener[Any], tg: anyio.abc.TaskGroup
    ) -> None:
        with anyio.CancelScope() as scope:
            self._accept_scopes.add(scope)
            if self._draining:
                scope.cancel()
            await accept_until_closed(listener, tg, self._admit, "h2")
        self._accept_scopes.discard(scope)
        await anyio.aclose_forcefully(listener)
        if self._handoff is not None and not self._accept_scopes:
            await self._handoff.aclose()

    async def _admit(self, sock: anyio.abc.ByteStream) -> None:
        if len(self._conns) >= self.max_connections:
            self._rejected += 1
            await anyio.aclose_forcefully(sock)
            return
        self._accepted += 1
        first = await self._sniff(sock)
        if first is None:
            await anyio.aclose_forcefully(sock)
        elif looks_like_h2(first):
            await self._serve_h2(sock, first)
        elif self._handoff is not None:
            self._http1 += 1
            await self._handoff.hand_over(_PrefixedStream(sock, first))
        else:
            log.info("h2 %s: not HTTP/2 and no HTTP/1.1 here; closing", _peer(sock))
            await anyio.aclose_forcefully(sock)

    async def _sniff(self, sock: anyio.abc.ByteStream) -> bytes | None:
        buf = b""
        with anyio.move_on_after(SNIFF_TIMEOUT):
            try:
                while True:
                    buf += await sock.receive(65536)
                    decided = looks_like_h2(buf)
                    if decided is not None:
                        return buf
            except anyio.EndOfStream:
                return None
            except STREAM_ERRORS:
                return None
        return None

    async def _serve_h2(self, sock: anyio.abc.ByteStream, first: bytes) -> None:
        async with anyio.create_task_group() as tg:

            def on_stream(stream: H2Stream) -> None:
                tg.start_soon(self._run_handler, stream)

            conn = H2Connection(
                sock,
                H2Codec(client_side=False, limits=self.limits),
                on_stream=on_stream,
                peer=_peer(sock),
                idle_timeout=self.idle_timeout,
            )
            self._conns.add(conn)
            if self._draining:
                conn.close()
            try:
                await conn.run(first)
            finally:
                self._conns.discard(conn)
                tg.cancel_scope.cancel()  # handlers of a dead connection have nobody to answer

    async def _run_handler(self, stream: H2Stream) -> None:
        self._streams += 1
        try:
            await self.handler(stream)
        except StreamResetError:
            pass  # the peer went away; nothing to answer
        except Exception:
            self._errors += 1
            log.exception("h2 handler failed on stream %d from %s", stream.id, stream.conn.peer)
            stream.reset(INTERNAL_ERROR)
        finally:
            stream.conn.finished(stream)

    async def drain(self) -> None:
        """Stop accepting, GOAWAY every connection, and return once all have closed."""
        self._draining = True
        for scope in self._accept_scopes:
            scope.cancel()
        for conn in list(self._conns):
            conn.close()
        if self.http1 is not None:
            await self.http1.drain()
        if self._serving and self._stopped is not None:
            await self._stopped.wait()

    def statistics(self) -> H2ServerStatistics:
        return H2ServerStatistics(
            active_connections=len(self._conns),
            accepted_connections=self._accepted,
            rejected_connections=self._rejected,
            http1_connections=self._http1,
            streams=self._streams,
            handler_errors=self._errors,
            draining=self._draining,
        )


def _peer(sock: anyio.abc.ByteStream) -> str:
    return format_address(sock.extra(anyio.abc.SocketAttribute.remote_address, None))


def _leaves(listener: anyio.abc.Listener[Any]) -> list[anyio.abc.Listener[Any]]:
    if isinstance(listener, MultiListener):
        return [leaf for child in listener.listeners for leaf in _leaves(child)]
    return [listener]


class _PrefixedStream(anyio.abc.ByteStream):
    """A connection whose first bytes were already read while sniffing."""

    def __init__(self, inner: anyio.abc.ByteStream, prefix: bytes) -> None:
        self._inner = inner
        self._prefix = prefix

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        return await self._inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._inner.send(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


class _HandoffListener(anyio.abc.Listener[anyio.abc.ByteStream]):
    """Feeds sniffed HTTP/1.1 connections to an `Http1Server` through its non-socket path."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[anyio.abc.ByteStream](64)

    async def hand_over(self, stream: anyio.abc.ByteStream) -> None:
        try:
            await self._send.send(stream)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            await anyio.aclose_forcefully(stream)

    async def serve(
        self,
        handler: Callable[[anyio.abc.ByteStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        assert task_group is not None
        async for stream in self._receive:
            task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
