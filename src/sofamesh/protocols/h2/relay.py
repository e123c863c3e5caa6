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
`NotReplayable` when a retry needs body bytes that were not kept, and
`CallerGone` when the caller's own stream ended while its answer was relayed:
the upstream answered, so that is no failure of the upstream's (a caller's reset
can land after the answer woke the relay and before its cancellation reaches it).
"""

from __future__ import annotations

import anyio

from sofamesh.codecs.h2 import RawHeaders
from sofamesh.protocols.h2.call import BodyReader, StreamCall, StreamReply
from sofamesh.protocols.h2.client import H2Pool
from sofamesh.protocols.h2.stream import H2Stream, StreamResetError


class CallerGone(Exception):
    """The caller's stream was reset, or its connection lost, while its answer was relayed."""


async def relay(
    pool: H2Pool,
    host: str,
    port: int,
    headers: RawHeaders,
    call: StreamCall,
) -> StreamReply:
    """Send `call` to `host:port` with `headers`; stream the response into `call.sink`."""
    reader = call.body.reader()
    if reader.ended:
        chunks = reader.take_ended()
        end = not chunks
        up = pool.open_stream_nowait(host, port, headers, end)
        if up is None:
            up = await pool.open_stream(host, port, headers, end)
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
