"""A small etcd v3 client over the JSON gateway: unary calls and streaming watches.

Unary calls (`/v3/kv/*`, `/v3/lease/*`) go through the mesh's own HTTP/1.1
pool. A watch is one long POST whose chunked answer never ends, so it gets its
own connection, read line by line with h11 (`WatchStream`); the pool buffers
whole bodies and cannot stream.

Several endpoints (`etcd://a:2379,b:2379`) are tried in turn: a call that
cannot connect, breaks, times out or meets a member without a leader (gRPC
UNAVAILABLE) moves on to the next one, and the client stays with whichever
answered last. Every failure reaches the caller as `RegistryError`.
"""

from __future__ import annotations

import collections
import json
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import h11

from sofamesh.codecs.http1 import HttpRequest
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.registry.base import RegistryError
from sofamesh.registry.etcd_wire import (
    GRPC_NOT_FOUND,
    GRPC_UNAVAILABLE,
    EtcdError,
    KeyValue,
    LineSplitter,
    WatchResponse,
    delete_request,
    error_from_body,
    header_revision,
    parse_range,
    parse_watch_message,
    put_request,
    range_request,
    unwrap_stream_message,
    watch_create_request,
)
from sofamesh.transport.errors import TransportError
from sofamesh.transport.net import STREAM_ERRORS, connect

JSON = [(b"content-type", b"application/json")]
MAX_ERROR_BODY = 64 * 1024


class EtcdClient:
    """Unary etcd calls with failover across `endpoints`, and watch streams."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        pool: Http1Pool,
        *,
        timeout: float = 3.0,
        max_line: int = 16 * 1024 * 1024,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.max_line = max_line
        self._pool = pool
        self._current = 0

    @property
    def current(self) -> tuple[str, int]:
        return self.endpoints[self._current]

    def rotate(self) -> None:
        """Prefer the next endpoint (after a watch on the current one broke)."""
        self._current = (self._current + 1) % len(self.endpoints)

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to `path` on the first endpoint that answers; the reply object."""
        data = json.dumps(body).encode()
        error: RegistryError | None = None
        for _ in range(len(self.endpoints)):
            host, port = self.current
            try:
                return await self._call_one(host, port, path, data)
            except EtcdError as e:
                if e.code != GRPC_UNAVAILABLE:
                    raise
                error = e
            except RegistryError as e:
                error = e
            self.rotate()
        assert error is not None
        raise error

    async def _call_one(self, host: str, port: int, path: str, data: bytes) -> dict[str, Any]:
        request = HttpRequest("POST", path, [*JSON, (b"content-length", b"%d" % len(data))], data)
        try:
            with anyio.fail_after(self.timeout):
                response = await self._pool.send(host, port, request)
        except TimeoutError:
            raise RegistryError(
                f"etcd {host}:{port}{path}: no answer in {self.timeout:g}s"
            ) from None
        except TransportError as e:
            raise RegistryError(f"etcd {host}:{port}{path}: {e}") from None
        try:
            reply = json.loads(response.body)
        except ValueError:
            raise RegistryError(f"etcd {host}:{port}{path}: answer is not JSON") from None
        if response.status != 200:
            raise error_from_body(reply)
        if not isinstance(reply, dict):
            raise RegistryError(f"etcd {host}:{port}{path}: answer is not an object")
        return reply

    # -- key-value ------------------------------------------------------------------------

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Write `key`; the revision it was written at."""
        return header_revision(await self.call("/v3/kv/put", put_request(key, value, lease)))

    async def get_prefix(
        self,
        prefix: bytes,
        *,
        keys_only: bool = False,
    ) -> tuple[int, list[KeyValue]]:
        """Every key under `prefix`, and the store revision they were read at."""
        body = range_request(prefix, prefix=True)
        if keys_only:
            body["keys_only"] = True
        return parse_range(await self.call("/v3/kv/range", body))

    async def get(self, key: bytes) -> tuple[int, KeyValue | None]:
        revision, kvs = parse_range(await self.call("/v3/kv/range", range_request(key)))
        return revision, (kvs[0] if kvs else None)

    async def delete(self, key: bytes, *, prefix: bool = False) -> int:
        reply = await self.call("/v3/kv/deleterange", delete_request(key, prefix=prefix))
        return header_revision(reply)

    # -- leases -----------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: its ID and the TTL etcd granted (it may raise a TTL below its floor)."""
        reply = await self.call("/v3/lease/grant", {"TTL": str(ttl)})
        if reply.get("error"):
            raise RegistryError(f"etcd lease grant: {reply['error']}")
        return int(reply["ID"]), int(reply.get("TTL", 0))

    async def lease_keepalive(self, lease: int) -> int:
        """Renew `lease`; the TTL left, 0 if the lease no longer exists (expired or revoked)."""
        # LeaseKeepAlive is a bidirectional stream; one request in the body gets one
        # `{"result": ...}` back. TTL is omitted (zero) for an unknown lease.
        reply = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(unwrap_stream_message(reply).get("TTL", 0))

    async def lease_revoke(self, lease: int) -> None:
        """Revoke `lease`, deleting every key attached to it; an unknown lease is fine."""
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if e.code != GRPC_NOT_FOUND:
                raise

    # -- watches ----------------------------------------------------------------------------

    @asynccontextmanager
    async def watch(
        self,
        key: bytes,
        start_revision: int,
        *,
        prefix: bool = True,
    ) -> AsyncIterator[WatchStream]:
        """A watch of `key` (or every key under it) from `start_revision`, on the current
        endpoint."""
        host, port = self.current
        try:
            stream = await connect(host, port, self.timeout)
        except TransportError as e:
            raise RegistryError(f"etcd watch {host}:{port}: {e}") from None
        _keep_alive(stream)
        async with stream:
            watch = WatchStream(stream, host, port, self.max_line)
            with anyio.move_on_after(self.timeout) as scope:
                await watch.start(watch_create_request(key, start_revision, prefix=prefix))
            if scope.cancelled_caught:
                raise RegistryError(f"etcd watch {host}:{port}: no answer in {self.timeout:g}s")
            yield watch


def _keep_alive(stream: anyio.abc.SocketStream) -> None:
    """TCP keepalive on a watch connection, which may be silent for hours: a peer that
    vanished without a reset (host down, partition) is noticed in about a minute."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class WatchStream:
    """One `POST /v3/watch`: send the create request, then read replies line by line.

    `receive()` raises RegistryError when the stream ends or breaks (the caller
    resumes from the revision after the last event it saw).
    """

    def __init__(self, stream: anyio.abc.ByteStream, host: str, port: int, max_line: int) -> None:
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT)
        self._lines = LineSplitter(max_line)
        self._pending: collections.deque[bytes] = collections.deque()
        self._where = f"etcd watch {host}:{port}"
        self._host = f"{host}:{port}".encode()

    async def start(self, create_request: dict[str, Any]) -> None:
        body = json.dumps(create_request).encode()
        headers = [(b"host", self._host), *JSON, (b"content-length", b"%d" % len(body))]
        conn = self._h11
        parts = [
            conn.send(h11.Request(method="POST", target="/v3/watch", headers=headers)),
            conn.send(h11.Data(data=body)),
            conn.send(h11.EndOfMessage()),
        ]
        await self._send(b"".join(p for p in parts if p))
        response = await self._next_event()
        if not isinstance(response, h11.Response):
            raise RegistryError(f"{self._where}: expected a response, got {response!r}")
        if response.status_code != 200:
            raise error_from_body(await self._error_body())

    async def receive(self) -> WatchResponse:
        while not self._pending:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                self._pending.extend(self._lines.feed(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                raise RegistryError(f"{self._where}: stream ended")
        return parse_watch_message(self._pending.popleft())

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchResponse:
        return await self.receive()

    async def _error_body(self) -> Any:
        body = b""
        while len(body) < MAX_ERROR_BODY:
            event = await self._next_event()
            if not isinstance(event, h11.Data):
                break
            body += event.data
        try:
            return json.loads(body)
        except ValueError:
            return body.decode("utf-8", "replace")

    async def _next_event(self) -> Any:
        conn = self._h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                raise RegistryError(f"{self._where}: bad HTTP: {e}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._stream.receive(65536)
            except anyio.EndOfStream:
                data = b""
            except STREAM_ERRORS as e:
                raise RegistryError(f"{self._where}: {e!r}") from None
            conn.receive_data(data)

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except STREAM_ERRORS as e:
            raise RegistryError(f"{self._where}: {e!r}") from None
