"""One client connection: send a request, read its response, say whether it can be reused.

The pool owns these; errors come out as the transport exceptions, with one
internal distinction the pool needs: `StaleConnection`, a reused connection
that turned out closed before any byte of the response came back (the server
closed it while it sat idle), which is safe to retry on a fresh connection.

A response whose body streams (`HttpRequest.stream_threshold`) comes back
with a `StreamedBody` as its `stream`: the connection then belongs to that
body, which reads it only as fast as its reader asks (one read of at most
64 KiB in flight) and closes it at the end.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Any

import anyio
import anyio.abc

from sofamesh.codecs.http1 import (
    BodyStream,
    Http1ClientCodec,
    Http1Limits,
    HttpIncompleteMessage,
    HttpProtocolError,
    HttpRequest,
    HttpResponse,
)
from sofamesh.codecs.http1.writer import CHUNKED, LAST_CHUNK, chunk
from sofamesh.transport.budget import OVERLOAD
from sofamesh.transport.errors import UpstreamProtocolError, UpstreamResetError
from sofamesh.transport.net import STREAM_ERRORS
from sofamesh.transport.streams import loop_stream_of, time_limit, try_send


class StaleConnection(UpstreamResetError):
    """A reused connection was closed by the server before it answered; retry once."""


class Http1Connection:
    """A client connection to one endpoint; one request at a time."""

    __slots__ = (
        "_codec",
        "_host",
        "_limited",
        "_stream",
        "address",
        "idle_since",
        "limits_itself",
        "requests",
    )

    def __init__(
        self, stream: anyio.abc.ByteStream, limits: Http1Limits, *, host: str, port: int
    ) -> None:
        self._stream = stream
        self._limited = loop_stream_of(stream)  # whose deadline bounds an exchange, if any
        # `request(timeout=...)` bounds the exchange by that deadline, with no context manager
        # or cancel scope (else it takes a `time_limit`, one coroutine frame more)
        self.limits_itself = self._limited is not None
        self._codec = Http1ClientCodec(limits)
        self._host = _host_header(host, port)
        self.address = f"{host}:{port}"
        self.idle_since = 0.0  # on the pool's clock, set when returned to the pool
        self.requests = 0

    async def request(self, request: HttpRequest, timeout: float | None = None) -> HttpResponse:
        """One exchange, within `timeout` seconds if given (TimeoutError then). Raises
        UpstreamResetError (StaleConnection if retryable), UpstreamProtocolError, or
        ValueError for an invalid request (nothing sent)."""
        limited = self._limited if timeout is not None else None
        if timeout is not None and limited is None:  # a cancel scope's limit (trio)
            with self.time_limit(timeout):
                return await self.request(request)
        # A reused connection found closed is retried, unless the body was a stream: its
        # pieces are gone.
        reused = self.requests > 0 and request.stream is None
        stream = self._stream
        got = 0  # response bytes read so far: in the process's buffer budget while read
        if limited is not None and timeout is not None:
            # The stream's own deadline, as `time_limit` sets it: no context manager (about
            # 4k instructions an exchange) and no cancel scope.
            limited.limit(timeout)
        try:
            data = self._codec.encode_request(request, host=self._host)
            self.requests += 1
            if not try_send(stream, data):
                await stream.send(data)
            if request.stream is not None:
                await self._upload(request.stream)
            while True:
                try:
                    chunk = await stream.receive(65536)
                except anyio.EndOfStream:
                    chunk = b""
                got += len(chunk)
                OVERLOAD.held += len(chunk)
                response = self._parse(chunk, reused)
                if response is not None:
                    if self._codec.streaming:
                        response.stream = StreamedBody(self, self._codec.stream_length)
                    return response
        except TimeoutError:  # a `time_limit` ran out (an OSError, but not the peer's doing)
            raise
        except STREAM_ERRORS as exc:
            raise self._lost(reused, f"lost mid-exchange: {exc!r}") from exc
        finally:
            OVERLOAD.held -= got
            if limited is not None:
                limited.deadline = math.inf

    def _parse(self, chunk: bytes, reused: bool) -> HttpResponse | None:
        codec = self._codec
        if not chunk and not codec.response_started:
            raise self._lost(reused, "closed before responding")
        try:
            return codec.receive_data(chunk)
        except HttpIncompleteMessage as exc:
            raise UpstreamResetError(f"{self.address}: {exc.reason}") from None
        except HttpProtocolError as exc:
            raise UpstreamProtocolError(f"{self.address}: {exc.reason}") from None

    async def _upload(self, body: BodyStream) -> None:
        """Send a streamed request body: one piece in flight, read only once the last is sent."""
        chunked, stream = self._codec.upload_framing is CHUNKED, self._stream
        while piece := await body.receive():
            if chunked:
                piece = chunk(piece)
            OVERLOAD.held += len(piece)
            try:
                await stream.send(piece)
            finally:
                OVERLOAD.held -= len(piece)
        if chunked:
            await stream.send(LAST_CHUNK)

    async def read_body(self) -> tuple[bytes, bool]:
        """The next piece of a streamed response body, and whether the body ended.

        Raises UpstreamResetError when the peer closed or reset mid-body,
        UpstreamProtocolError for bad framing.
        """
        codec, data = self._codec, None
        while True:
            try:
                piece, ended = codec.body_data(data)
            except HttpIncompleteMessage as exc:
                raise UpstreamResetError(f"{self.address}: {exc.reason}") from None
            except HttpProtocolError as exc:
                raise UpstreamProtocolError(f"{self.address}: {exc.reason}") from None
            if piece or ended:
                return piece, ended
            try:
                data = await self._stream.receive(65536)
            except anyio.EndOfStream:
                data = b""
            except TimeoutError:
                raise
            except STREAM_ERRORS as exc:
                raise UpstreamResetError(f"{self.address}: lost mid-body: {exc!r}") from exc

    def _lost(self, reused: bool, what: str) -> UpstreamResetError:
        if reused and not self._codec.response_started:
            return StaleConnection(f"{self.address}: reused connection {what}")
        return UpstreamResetError(f"{self.address}: connection {what}")

    def time_limit(self, seconds: float | None) -> AbstractContextManager[Any]:
        """Within the block, waiting on the peer raises TimeoutError after `seconds`."""
        return time_limit(self._stream, seconds)

    @property
    def reusable(self) -> bool:
        return self._codec.reusable

    async def aclose(self) -> None:
        """Close at once, without waiting on the peer (safe inside a cancelled scope)."""
        await anyio.aclose_forcefully(self._stream)


def _host_header(host: str, port: int) -> bytes:
    """The Host field for `host:port` (RFC 9110 §7.2), brackets for IPv6 literals."""
    name = f"[{host}]" if ":" in host else host
    value = name if port == 80 else f"{name}:{port}"
    return value.encode("ascii") if value.isascii() else value.encode("idna")


class StreamedBody:
    """A response body read from its connection as the reader asks; the connection's owner.

    Each `receive` waits at most `timeout` seconds for the peer (Envoy's
    stream idle timeout); whatever ends the body (its end, an error, `aclose`)
    closes the connection.
    """

    __slots__ = ("_conn", "_done", "length", "timeout")

    def __init__(self, conn: Http1Connection, length: int | None, timeout: float = 30.0) -> None:
        self._conn = conn
        self._done = False
        self.length = length
        self.timeout = timeout

    async def receive(self) -> bytes:
        if self._done:
            return b""
        try:
            with self._conn.time_limit(self.timeout):
                piece, ended = await self._conn.read_body()
        except BaseException:
            await self.aclose()
            raise
        if ended:
            await self.aclose()
        return piece

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            await self._conn.aclose()
