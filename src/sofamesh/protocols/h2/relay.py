"""Relay one streamed call to an upstream over HTTP/2, chunk by chunk, both ways at once.

The request body is pumped upstream while the response is pumped back into
the call's sink, so unary, client-, server- and bidirectional streaming all
take the same path, with flow control end to end (each side reads only as
fast as the other side's window lets it write). When the whole request is
already here (a unary call usually arrives in one read), it is sent inline
and no pump task is started.

Failures come out as the transport's exceptions: `ConnectError` before any
byte left, `StreamResetError` for a reset or lost connection upstream (its
`refused` says whether the upstream provably did not process the stream),
`NotReplayable` when a retry needs body bytes that were not kept,
`DeadlineExpired` (a `StreamResetError`) when the call's `timeout` passed, and
`CallerGone` when the caller's own stream ended while its answer was relayed:
the upstream answered, so that is no failure of the upstream's (a caller's reset
can land after the answer woke the relay and before its cancellation reaches it).

The relay holds the call to its deadline itself (gRPC's `enforces_deadline`): when the
request is whole and a pooled connection has room, every wait is on the upstream stream,
so the pool's `DeadlineWatch` resets that stream at the deadline (`H2Stream.cancel`, CANCEL
upstream) and the waits end in `DeadlineExpired`; an anyio cancel scope per call cost more
than the rest of the deadline's work (its exit walks every enclosing scope). A relay that
must connect, wait for room or pump a request still arriving runs under a cancel scope
armed on the same watch. One wait is not on the upstream stream: handing the answer to a
caller whose window is shut; the deadline then takes effect when that write returns, at
the latest at the caller's send timeout.
"""

from __future__ import annotations

import anyio

from sofamesh.codecs.h2 import CANCEL, RawHeaders
from sofamesh.protocols.h2.call import BodyReader, StreamCall, StreamReply
from sofamesh.protocols.h2.client import H2Pool
from sofamesh.protocols.h2.stream import DeadlineExpired, H2Stream, StreamResetError


class CallerGone(Exception):
    """The caller's stream was reset, or its connection lost, while its answer was relayed."""


async def relay(
    pool: H2Pool,
    host: str,
    port: int,
    headers: RawHeaders,
    call: StreamCall,
    timeout: float | None = None,
) -> StreamReply:
    """Send `call` to `host:port` with `headers`; stream the response into `call.sink`.
    With `timeout` (seconds), `DeadlineExpired` once it has passed."""
    reader = call.body.reader()
    chunks = reader.take_ended() if reader.ended else None
    if chunks is not None:
        up = pool.open_stream_nowait(host, port, headers, not chunks)
        if up is not None:
            # The common case: every wait below is on `up`, so the pool's deadline watch
            # ends the call by resetting `up` (`H2Stream.cancel`), without a cancel scope.
            watch = pool.deadlines
            entry = None if timeout is None else watch.add(watch.time_in(timeout), up)
            try:
                if chunks:
                    await _send_all(up, chunks)
                return await _respond(up, call)
            finally:
                if entry is not None:
                    watch.remove(entry)
                up.conn.finished(up)
    if timeout is None:
        return await _relay_waiting(pool, host, port, headers, call, reader, chunks)
    with pool.deadlines.cancel_after(timeout):
        return await _relay_waiting(pool, host, port, headers, call, reader, chunks)
    raise DeadlineExpired(CANCEL, "the call's deadline passed")


async def _relay_waiting(
    pool: H2Pool,
    host: str,
    port: int,
    headers: RawHeaders,
    call: StreamCall,
    reader: BodyReader,
    chunks: list[bytes] | None,
) -> StreamReply:
    """`relay` when the stream must wait to open (a connection to make, or no room on the
    open ones) or the request is still arriving (a pump task sends it): under a cancel
    scope when the call has a deadline, since it waits on more than the stream."""
    if chunks is not None:
        up = await pool.open_stream(host, port, headers, not chunks)
        try:
            if chunks:
                await _send_all(up, chunks)
            return await _respond(up, call)
        finally:
            up.conn.finished(up)
    up = await pool.open_stream(host, port, headers)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, reader, up)
            reply = await _respond(up, call)
            tg.cancel_scope.cancel()  # the upstream answered: it needs no more of the request
        return reply
    finally:
        up.conn.finished(up)


async def _send_all(up: H2Stream, chunks: list[bytes]) -> None:
    try:
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            await up.send_data(chunk, end_stream=i == last)
    except StreamResetError:
        if not up.remote_closed:  # a response that already ended (RFC 9113 §8.1) is kept
            raise


async def _pump(reader: BodyReader, up: H2Stream) -> None:
    try:
        while (chunk := await reader.receive()) is not None:
            await up.send_data(chunk)
        await up.send_data(b"", end_stream=True)
    except StreamResetError:
        pass  # the response side reports what happened to the stream


async def _respond(up: H2Stream, call: StreamCall) -> StreamReply:
    head = await up.receive_headers()
    if up.remote_closed and up.trailers is None and not up.chunks:
        return StreamReply(head, [], trailers_only=True)
    sink = call.sink
    try:
        await sink.send_headers(head)
    except StreamResetError as e:
        raise CallerGone(str(e)) from e
    call.body.forget()  # the caller saw a response: no attempt follows
    while (chunk := await up.receive_data()) is not None:
        try:
            await sink.send_data(chunk)
        except StreamResetError as e:
            raise CallerGone(str(e)) from e
    return StreamReply(head, up.trailers or [])
