"""Raw HTTP/1.1 on real sockets for the strictness tests: a recording upstream and a raw client.

The upstream parses what it receives with h11 (in strict step with the bytes: one
h11 connection per TCP connection), records every request, and answers each with
200 and the target it saw; anything h11 cannot frame is recorded as an error. The
client writes bytes exactly as given (no library in between to normalise them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import attrs
import h11

from sofamesh.codecs.http1 import Http1ClientCodec, HttpRequest, HttpResponse

PATIENCE = 5.0  # seconds before a case fails instead of hanging


@attrs.define
class Received:
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


@attrs.define
class RecordingUpstream:
    """What the app behind the sidecar received, request by request."""

    requests: list[Received] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    self.errors.append(str(exc))
                    return
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        conn.receive_data(b"")
                elif isinstance(event, h11.Request):
                    await self._read(conn, event, stream)
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                else:  # ConnectionClosed, or anything a client should not send
                    return

    async def _read(
        self, conn: h11.Connection, req: h11.Request, stream: anyio.abc.SocketStream
    ) -> None:
        body = b""
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive())
            elif isinstance(event, h11.Data):
                body += event.data
        headers = [(k.lower(), v) for k, v in req.headers.raw_items()]
        target = req.target.decode("latin-1")
        self.requests.append(Received(req.method.decode(), target, headers, body))
        data = target.encode("latin-1")
        reply = [(b"content-length", b"%d" % len(data))]
        await stream.send(conn.send(h11.Response(status_code=200, headers=reply)) or b"")
        await stream.send(conn.send(h11.Data(data=data)) or b"")
        await stream.send(conn.send(h11.EndOfMessage()) or b"")


@asynccontextmanager
async def recording_upstream() -> AsyncIterator[tuple[RecordingUpstream, int]]:
    """A `RecordingUpstream` on 127.0.0.1 (a free port) until the block ends."""
    upstream = RecordingUpstream()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, upstream.handle)
        yield upstream, port
        tg.cancel_scope.cancel()


@attrs.define
class Exchange:
    """What a raw client saw: the first response (None if the connection just closed),
    whether the sidecar then closed the connection, and any bytes after the response."""

    response: HttpResponse | None
    closed: bool
    extra: bytes


async def exchange(address: str, data: bytes, *, wait_close: bool) -> Exchange:
    """Send `data` on a new connection and read one response.

    With `wait_close`, read on to the end of the connection: a well-behaved sidecar
    closes after an error, and any bytes after the first response (a second response:
    a smuggled request) are returned in `extra`.
    """
    host, port = address.rsplit(":", 1)
    codec = Http1ClientCodec()
    codec.encode_request(HttpRequest("GET", "/"), host=b"x")  # only to arm the parser
    with anyio.fail_after(PATIENCE):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(data)
            response = await _one_response(stream, codec)
            if response is None:
                return Exchange(None, True, b"")
            if not wait_close:
                return Exchange(response, False, b"")
            extra = b""
            try:
                while chunk := await stream.receive():
                    extra += chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            return Exchange(response, True, extra)


async def _one_response(
    stream: anyio.abc.ByteStream, codec: Http1ClientCodec
) -> HttpResponse | None:
    while True:
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            if not codec.response_started:
                return None
            chunk = b""
        response = codec.receive_data(chunk)
        if response is not None:
            return response
