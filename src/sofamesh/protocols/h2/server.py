"""An HTTP/2 (h2c, prior knowledge) server on any anyio listener, with HTTP/1.1 on the same port.

Each accepted connection is sniffed: the HTTP/2 preface (RFC 9113 §3.4)
makes it an `H2Connection` whose every new stream runs `handler(stream)` in
a task of its own, taken from the connection's reused workers
(`transport/workers.py`: starting an anyio task per stream cost about as much
as a unary call's codec work); anything else goes, with the bytes already read,
to the optional `http1` server (`Http1Server`), so one port serves HTTP/1.1,
h2c and gRPC. A connection one of the `sniffed` matchers claims (Dubbo's magic, say) goes
to that protocol's server the same way, so the port serves it too. A handler
that fails resets its stream (INTERNAL_ERROR) and the connection's other
streams carry on. A stream the peer reset before its
handler started never runs it (no upstream call for a rapid reset); one reset
while its handler runs cancels the handler if it asked to (setting `on_reset` to
`H2Stream.cancel_handler`, which cancels the scope its worker keeps:
`CancellableWorkers`, no scope of its own per stream).

`drain()` stops accepting, sends every connection a GOAWAY (NO_ERROR) so
clients open no new streams, lets the streams in flight finish, and returns
once every connection has closed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import attrs

from sofamesh.codecs.h2 import (
    DEFAULT_H2_LIMITS,
    INTERNAL_ERROR,
    REFUSED_STREAM,
    H2Codec,
    H2Limits,
    looks_like_h2,
)
from sofamesh.protocols.h2.conn import H2Connection
from sofamesh.protocols.h2.stream import H2Stream, StreamResetError
from sofamesh.transport.budget import OVERLOAD, Holding
from sofamesh.transport.net import STREAM_ERRORS, format_address
from sofamesh.transport.serving import ServerLifecycle
from sofamesh.transport.tls import peer_identity
from sofamesh.transport.workers import CancellableWorkers

log = logging.getLogger("sofamesh.h2")

H2Handler = Callable[[H2Stream], Awaitable[None]]
# True/False once a connection's first bytes decide, None while too few to tell.
PrefixMatch = Callable[[bytes], bool | None]
SNIFF_TIMEOUT = 10.0


@attrs.frozen(slots=True)
class H2ServerStatistics:
    active_connections: int
    accepted_connections: int
    rejected_connections: int
    evicted_connections: int  # idle ones closed to make room (transport/admission.py)
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
        sniffed: Sequence[tuple[PrefixMatch, Any]] = (),
        max_connections: int = 10_000,
        idle_timeout: float = 60.0,
        max_connections_per_source: int = 0,
        send_timeout: float = 60.0,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.http1 = http1
        # Other protocols' servers (`serve(listener)`, `drain()`) and what they take.
        self.sniffed = [(matches, server, _HandoffListener()) for matches, server in sniffed]
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout  # a stream the client opens no window for is reset
        self._life: ServerLifecycle[H2Connection] = ServerLifecycle(
            "h2",
            max_connections,
            on_accept_end=self._accept_ended,
            max_per_source=max_connections_per_source,
        )
        self._handoff: _HandoffListener | None = None
        self._sniffed_started = False
        self._http1 = self._streams = self._errors = 0
        OVERLOAD.watch(self)  # its streams' held responses, for the overload action

    async def serve(
        self,
        listener: anyio.abc.Listener[Any],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept and serve until `drain` finishes; closes `listener`. Use `task_group.start`."""
        await self._life.serve(listener, self._admit, task_status, also=self._start_http1)

    def _start_http1(self, tg: anyio.abc.TaskGroup) -> None:
        if self.http1 is not None and self._handoff is None:
            self._handoff = _HandoffListener()
            tg.start_soon(self.http1.serve, self._handoff)
        if not self._sniffed_started:
            self._sniffed_started = True
            for _, server, handoff in self.sniffed:
                tg.start_soon(server.serve, handoff)

    async def _accept_ended(self) -> None:
        if self._life.accepting:
            return
        if self._handoff is not None:
            await self._handoff.aclose()
        for _, _, handoff in self.sniffed:
            handoff.finish()  # their servers take what was handed over, then stop

    async def _admit(self, sock: anyio.abc.ByteStream) -> None:
        if not await self._life.admit(sock):
            return
        first = await self._sniff(sock)
        if first is None:
            await anyio.aclose_forcefully(sock)
        elif (other := self._claimed(first)) is not None:
            await other.hand_over(_PrefixedStream(sock, first))
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
                    if self._decided(buf):
                        return buf
            except anyio.EndOfStream:
                return None
            except STREAM_ERRORS:
                return None
        return None

    def _decided(self, buf: bytes) -> bool:
        if looks_like_h2(buf) is None:
            return False
        return all(matches(buf) is not None for matches, _, _ in self.sniffed)

    def _claimed(self, first: bytes) -> _HandoffListener | None:
        """The hand-off of the sniffed protocol whose matcher takes `first`, if any."""
        for matches, _, handoff in self.sniffed:
            if matches(first):
                return handoff
        return None

    async def _serve_h2(self, sock: anyio.abc.ByteStream, first: bytes) -> None:
        async with anyio.create_task_group() as tg:
            workers = CancellableWorkers(tg, self._run_handler, "h2 stream")
            conn = H2Connection(
                sock,
                H2Codec(client_side=False, limits=self.limits),
                on_stream=workers.submit,
                peer=_peer(sock),
                idle_timeout=self.idle_timeout,
                send_timeout=self.send_timeout,
            )
            conn.identity = peer_identity(sock)
            self._life.conns.add(conn)
            if self._life.draining:
                conn.close()
            try:
                await conn.run(first)
            finally:
                self._life.conns.discard(conn)
                workers.close()
                tg.cancel_scope.cancel()  # handlers of a dead connection have nobody to answer

    async def _run_handler(self, stream: H2Stream, cancel: Callable[[], None]) -> None:
        self._streams += 1
        stream.cancel_handler = cancel  # for the handler's `on_reset`, while it runs
        try:
            if stream.error is not None:
                return  # reset before its handler ran (a rapid reset): no upstream call
            if OVERLOAD.held > OVERLOAD.limit:  # over the buffer budget: safe to retry
                OVERLOAD.shed("h2", stream.conn.peer)
                stream.reset(REFUSED_STREAM)
                return
            await self.handler(stream)
        except StreamResetError:
            pass  # the peer went away; nothing to answer
        except Exception:
            self._errors += 1
            log.exception("h2 handler failed on stream %d from %s", stream.id, stream.conn.peer)
            stream.reset(INTERNAL_ERROR)
        finally:
            stream.on_reset = stream.cancel_handler = None  # the scope serves the next stream
            stream.conn.finished(stream)

    async def drain(self) -> None:
        """Stop accepting, GOAWAY every connection, and return once all have closed."""
        self._life.begin_drain()
        for conn in list(self._life.conns):
            conn.close()
        if self.http1 is not None:
            await self.http1.drain()
        for _, server, _ in self.sniffed:
            await server.drain()
        await self._life.wait_stopped()

    def holders(self) -> Iterator[Holding]:
        for conn in list(self._life.conns):
            yield from conn.holders()

    def statistics(self) -> H2ServerStatistics:
        return H2ServerStatistics(
            **self._life.connection_counts(),
            http1_connections=self._http1,
            streams=self._streams,
            handler_errors=self._errors,
        )


def _peer(sock: anyio.abc.ByteStream) -> str:
    return format_address(sock.extra(anyio.abc.SocketAttribute.remote_address, None))


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

    def finish(self) -> None:
        """Hand nothing more over; `serve` returns once it took what was handed."""
        self._send.close()

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
