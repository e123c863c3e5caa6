"""grpclib in the mesh: a channel for generated stubs, and a provider for grpclib handlers.

Consumer: `channel = mesh.grpc_channel()` is accepted wherever grpclib wants
a `Channel` (its stubs only call `channel.request(...)`). Every call is one
invocation through the outbound chain: the service comes from the method
path (`/package.Service/Method`) unless the channel names one, discovery and
per-call balancing pick the endpoint, and the stream is relayed over the
mesh's own HTTP/2 pool. Failures arrive as grpclib's `GRPCError`.

Provider: `async with mesh.serve_grpc([Greeter()]):` serves handlers that
implement grpclib's `__mapping__()` (what its generated `*Base` classes do)
through the inbound chain, and publishes each gRPC service name they serve.

Both run on the mesh's own anyio code, not on grpclib's asyncio transport,
so they work on asyncio and on trio; grpclib's own `Channel` and `Server`
(asyncio only) are not used. In sidecar mode calls go to the local sidecar's
outbound gRPC listener and providers register with it, as for HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from grpclib.const import Status as GStatus
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError, ProtocolError
from grpclib.metadata import Deadline
from multidict import MultiDict

from sofamesh.chain import Handler
from sofamesh.clock import Clock
from sofamesh.codecs.grpc import (
    CONTENT_TYPE,
    GrpcFramingError,
    MessageDecoder,
    MethodPath,
    code_of,
    encode_message,
    status_of,
)
from sofamesh.codecs.grpc_heads import (
    outcome_of,
    status_trailers,
)
from sofamesh.model import Headers, Invocation, Result
from sofamesh.protocols.grpc.support import GrpcListener
from sofamesh.protocols.h2.call import (
    QueueSink,
    QueueSource,
    ReplayableBody,
    StreamCall,
    StreamReply,
)
from sofamesh.protocols.h2.listener import h2_limits
from sofamesh.protocols.h2.server import H2Server

if TYPE_CHECKING:
    from sofamesh.sdk.mesh import Mesh

log = logging.getLogger("sofamesh.grpc")
_CODEC = ProtoCodec()
_HEAD = [(b":status", b"200"), (b"content-type", CONTENT_TYPE.encode())]


def _metadata_pairs(metadata: Any) -> list[tuple[str, str]]:
    return [(str(k).lower(), str(v)) for k, v in MultiDict(metadata or ()).items()]


def _to_multidict(raw: Sequence[tuple[bytes, bytes]]) -> MultiDict[str]:
    skip = (b"grpc-status", b"grpc-message", b"content-type", b"x-sofamesh-error")
    return MultiDict(
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in raw
        if k[:1] != b":" and k not in skip
    )


# -- consumer ---------------------------------------------------------------------------


class MeshChannel:
    """A grpclib-compatible channel whose calls go through the mesh."""

    def __init__(self, mesh: Mesh, service: str | None = None) -> None:
        self._mesh = mesh
        self._service = service
        self._chain: Handler | None = None

    def request(
        self,
        name: str,
        cardinality: Any,
        request_type: Any,
        reply_type: Any,
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: Any = None,
    ) -> MeshStream:
        if deadline is not None:
            remaining = deadline.time_remaining()
            timeout = remaining if timeout is None else min(timeout, remaining)
        mp = MethodPath.parse(name)
        service = self._service or (mp.service if mp else "")
        return MeshStream(self, name, service, request_type, reply_type, timeout, metadata)

    async def chain(self) -> Handler:
        if self._chain is None:
            self._chain = self._mesh.outbound_chain
        return self._chain

    def close(self) -> None:
        """Nothing to close: connections belong to the mesh."""

    async def __aenter__(self) -> MeshChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class MeshStream:
    """One call, with grpclib's client `Stream` interface (what generated stubs use)."""

    def __init__(
        self,
        channel: MeshChannel,
        name: str,
        service: str,
        request_type: Any,
        reply_type: Any,
        timeout: float | None,
        metadata: Any,
    ) -> None:
        self._channel = channel
        self._name = name
        self._service = service
        self._request_type = request_type
        self._reply_type = reply_type
        self._timeout = timeout
        self._metadata = _metadata_pairs(metadata)
        self._source = QueueSource()
        self._sink = QueueSink()
        self._decoder = MessageDecoder()
        self._pending: list[bytes] = []
        self._scope: anyio.CancelScope | None = None
        self._done = anyio.Event()
        self._outcome: tuple[int, str, MultiDict[str]] | None = None
        self.initial_metadata: MultiDict[str] | None = None
        self.trailing_metadata: MultiDict[str] | None = None
        self.peer = None

    async def __aenter__(self) -> MeshStream:
        return self

    async def __aexit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        if self._scope is None:
            return
        try:
            if exc is None and self._outcome is None:
                await self.recv_trailing_metadata()
        finally:
            if not self._done.is_set():
                self._scope.cancel()  # resets the upstream stream

    # -- sending ------------------------------------------------------------------------

    async def send_request(self, *, end: bool = False) -> None:
        if self._scope is not None:
            raise ProtocolError("Request is already sent")
        chain = await self._channel.chain()
        self._scope = anyio.CancelScope()
        mesh = self._channel._mesh
        # Positional: a class called with keywords builds a dict for them.
        inv = Invocation(
            "grpc", self._service, self._name, Headers.from_lower(self._metadata), mesh.config.app
        )
        inv.payload = StreamCall(
            self._name, self._service, ReplayableBody(self._source), self._sink
        )
        if self._timeout is not None:
            inv.deadline = mesh.runtime.clock.now() + self._timeout
        mesh.start_soon(self._run, chain, inv, self._scope)
        if end:
            await self.end()

    async def send_message(self, message: Any, *, end: bool = False) -> None:
        if self._scope is None:
            await self.send_request()
        data = _CODEC.encode(message, self._request_type)
        await self._source.send(encode_message(data))
        if end:
            await self.end()

    async def end(self) -> None:
        self._source.end()

    async def cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self, chain: Handler, inv: Invocation, scope: anyio.CancelScope) -> None:
        result: Result | None = None
        with scope:
            try:
                result = await chain(inv)
            except Exception:
                log.exception("gRPC call %s failed inside the mesh", self._name)
            finally:
                inv.payload.body.close()  # the kept request chunks leave the buffer budget
        self._outcome = _outcome(result, self._name)
        self._source.fail(GRPCError(GStatus.CANCELLED, "the call has ended"))
        self._sink.close()
        self._done.set()

    # -- receiving ----------------------------------------------------------------------

    async def recv_initial_metadata(self) -> None:
        if self._scope is None:
            raise ProtocolError("Request was not sent yet")
        headers = await self._sink.wait_headers()
        self.initial_metadata = _to_multidict(headers or [])

    async def recv_message(self) -> Any:
        if self.initial_metadata is None:
            await self.recv_initial_metadata()
        while not self._pending:
            chunk = await self._sink.receive()
            if chunk is None:
                await self.recv_trailing_metadata()
                return None
            try:
                self._pending.extend(self._decoder.feed(chunk))
            except GrpcFramingError as e:
                await self.cancel()
                raise GRPCError(GStatus(int(e.status)), e.reason) from e
        return _CODEC.decode(self._pending.pop(0), self._reply_type)

    async def recv_trailing_metadata(self) -> None:
        await self._done.wait()
        assert self._outcome is not None
        code, message, trailing = self._outcome
        self.trailing_metadata = trailing
        if self.initial_metadata is None:
            self.initial_metadata = MultiDict()
        if code != 0:
            raise GRPCError(GStatus(code), message or None)

    def __aiter__(self) -> MeshStream:
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message


def _outcome(result: Result | None, name: str) -> tuple[int, str, MultiDict[str]]:
    if result is None:  # cancelled, or failed inside the mesh
        return int(GStatus.CANCELLED.value), f"{name}: call cancelled", MultiDict()
    reply = result.payload
    if isinstance(reply, StreamReply):
        out = outcome_of(reply.headers, reply.trailers)
        trailers = reply.headers if reply.trailers_only else reply.trailers
        return out.code, out.message, _to_multidict(trailers)
    code = code_of(result.status, result.code)
    return code, result.detail or f"{name}: {result.status.value}", MultiDict()


# -- provider ---------------------------------------------------------------------------


class GrpclibTerminal:
    """The inbound terminal of an SDK provider: runs the grpclib handler of the call's path."""

    def __init__(self, handlers: Sequence[Any], clock: Clock) -> None:
        self.mapping: dict[str, Any] = {}
        for h in handlers:
            self.mapping.update(h.__mapping__())
        self._clock = clock

    @property
    def services(self) -> list[str]:
        names = {mp.service for p in self.mapping if (mp := MethodPath.parse(p)) is not None}
        return sorted(names)

    async def __call__(self, inv: Invocation) -> Result:
        call: StreamCall = inv.payload
        handler = self.mapping.get(call.path)
        if handler is None:
            return _reply(int(GStatus.UNIMPLEMENTED.value), "Method not found", False, [])
        stream = ServerStream(call, handler, inv, _deadline(inv, self._clock.now()))
        try:
            await handler.func(stream)
        except GRPCError as e:
            code, message = int(e.status.value), e.message or ""
        except (anyio.get_cancelled_exc_class(), KeyboardInterrupt):
            raise
        except Exception:
            log.exception("gRPC handler for %s failed", call.path)
            code, message = int(GStatus.UNKNOWN.value), "Internal Server Error"
        else:
            if stream.trailers is not None:
                return stream.trailers
            code, message = 0, ""
        return _reply(code, message, call.sink.committed, [])


def _reply(code: int, message: str, committed: bool, metadata: list[tuple[bytes, bytes]]) -> Result:
    trailers = status_trailers(code, message) + metadata
    reply = StreamReply(_HEAD + trailers, trailers, trailers_only=not committed)
    return Result(status_of(code), code, payload=reply, detail=message)


class ServerStream:
    """grpclib's server `Stream` interface over a mesh call."""

    def __init__(
        self, call: StreamCall, handler: Any, inv: Invocation, deadline: Deadline | None
    ) -> None:
        self._call = call
        self._handler = handler
        self._reader = call.body.reader()
        self._decoder = MessageDecoder()
        self._pending: list[bytes] = []
        self._ended = False
        self.metadata: MultiDict[str] = MultiDict(inv.headers.items())
        self.deadline = deadline
        self.user_agent = inv.headers.get("user-agent")
        self.peer = None
        self.trailers: Result | None = None

    async def recv_message(self) -> Any:
        while not self._pending:
            if self._ended:
                return None
            chunk = await self._reader.receive()
            if chunk is None:
                self._ended = True
                continue
            try:
                self._pending.extend(self._decoder.feed(chunk))
            except GrpcFramingError as e:
                raise GRPCError(GStatus(int(e.status)), e.reason) from e
        return _CODEC.decode(self._pending.pop(0), self._handler.request_type)

    async def send_initial_metadata(self, *, metadata: Any = None) -> None:
        if self._call.sink.committed:
            raise ProtocolError("Initial metadata was already sent")
        md = [(k.encode(), v.encode()) for k, v in _metadata_pairs(metadata)]
        await self._call.sink.send_headers(_HEAD + md)

    async def send_message(self, message: Any) -> None:
        if not self._call.sink.committed:
            await self.send_initial_metadata()
        data = _CODEC.encode(message, self._handler.reply_type)
        await self._call.sink.send_data(encode_message(data))

    async def send_trailing_metadata(
        self,
        *,
        status: GStatus = GStatus.OK,
        status_message: str | None = None,
        status_details: Any = None,
        metadata: Any = None,
    ) -> None:
        if self.trailers is not None:
            raise ProtocolError("Trailing metadata was already sent")
        md = [(k.encode(), v.encode()) for k, v in _metadata_pairs(metadata)]
        committed = self._call.sink.committed
        self.trailers = _reply(int(status.value), status_message or "", committed, md)

    async def cancel(self) -> None:
        raise GRPCError(GStatus.CANCELLED, "cancelled by the handler")

    def __aiter__(self) -> ServerStream:
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message


def _deadline(inv: Invocation, now: float) -> Deadline | None:
    """grpclib's Deadline (on time.monotonic) for the call's deadline (on the mesh clock)."""
    return None if inv.deadline is None else Deadline.from_timeout(max(inv.deadline - now, 0.0))


def provider_server(mesh: Mesh, terminal: GrpclibTerminal, limits: Any = None) -> H2Server:
    """An HTTP/2 server running `terminal` behind the mesh's inbound chain."""
    rt = mesh.runtime
    chain = rt.inbound_chain(terminal)
    listener = GrpcListener(lambda _inv: chain, rt.clock, enforce_deadline=True)
    return H2Server(listener, h2_limits(limits))
