"""A relayed gRPC call is held to its deadline by the relay, on each path the relay takes.

`GrpcSupport` enforces deadlines itself (no cancel scope from the runtime per call): when
the request is whole and a pooled connection has room, the pool's deadline watch resets the
upstream stream at the deadline; a call that must connect first, or whose request is still
arriving, runs under a cancel scope armed on the same watch. Every path ends in
`Status.TIMEOUT`, the provider sees its stream reset (CANCEL), and the connection goes on
serving the next call. An answer that has wholly arrived when the deadline passes wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from sofamesh.clock import MonotonicClock
from sofamesh.codecs.h2 import CANCEL, RawHeaders
from sofamesh.config.model import PolicyConfig
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.grpc.support import GrpcSupport
from sofamesh.protocols.h2.call import QueueSink, QueueSource, ReplayableBody, StreamCall
from sofamesh.protocols.h2.server import H2Server
from sofamesh.protocols.h2.stream import H2Stream
from sofamesh.protocols.h2.support import H2Support

pytestmark = pytest.mark.anyio

MESSAGE = b"\0\0\0\0\x03abc"  # one gRPC message, uncompressed


class _Provider:
    """A raw HTTP/2 server: echoes `/x.Echo/Unary`, holds `/x.Echo/Hang` until it is reset."""

    def __init__(self) -> None:
        self.streams = 0
        self.resets: list[int] = []
        self.reset_seen = anyio.Event()

    async def __call__(self, stream: H2Stream) -> None:
        assert stream.headers is not None
        self.streams += 1
        if (b":path", b"/x.Echo/Hang") in stream.headers:
            gone = anyio.Event()
            stream.on_reset = gone.set
            await gone.wait()
            assert stream.error is not None
            self.resets.append(stream.error.error_code)
            self.reset_seen.set()
            return
        body = b""
        while (chunk := await stream.receive_data()) is not None:
            body += chunk
        await stream.send_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
        await stream.send_data(body)
        await stream.send_trailers([(b"grpc-status", b"0")])


@asynccontextmanager
async def _mesh() -> AsyncIterator[tuple[GrpcSupport, _Provider, int]]:
    provider = _Provider()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    h2 = H2Support(PolicyConfig(), MonotonicClock())
    async with anyio.create_task_group() as tg:
        await tg.start(H2Server(provider).serve, listener)
        async with h2, GrpcSupport(PolicyConfig(), MonotonicClock(), h2) as support:
            yield support, provider, port
        tg.cancel_scope.cancel()


async def _call(
    support: GrpcSupport,
    port: int,
    method: str,
    timeout: float | None,
    *,
    whole: bool = True,
    sink: QueueSink | None = None,
) -> tuple[Result, QueueSink]:
    source = QueueSource()
    await source.send(MESSAGE)
    if whole:
        source.end()
    sink = sink or QueueSink()
    path = f"/x.Echo/{method}"
    call = StreamCall(path, "", ReplayableBody(source), sink)
    deadline = None if timeout is None else MonotonicClock().now() + timeout
    inv = Invocation("grpc", "x.Echo", path, None, "", deadline, "", call)
    with anyio.fail_after(10):
        return await support.send("127.0.0.1", port, inv), sink


def _timed_out(result: Result) -> bool:
    return result.status is Status.TIMEOUT and "did not answer within 200 ms" in result.detail


async def test_on_a_warm_connection_the_deadline_resets_the_upstream_stream() -> None:
    async with _mesh() as (support, provider, port):
        first, _ = await _call(support, port, "Unary", 5.0)
        assert (first.status, first.code) == (Status.OK, 0)  # the pool now has a connection
        result, sink = await _call(support, port, "Hang", 0.2)
        assert _timed_out(result), result
        assert not sink.committed
        with anyio.fail_after(5):
            await provider.reset_seen.wait()
        assert provider.resets == [CANCEL]
        again, _ = await _call(support, port, "Unary", 5.0)  # the connection serves on
        assert (again.status, again.code) == (Status.OK, 0)
        assert support.pool.statistics().connections_opened == 1


async def test_a_call_that_must_connect_first_times_out_under_a_scope() -> None:
    async with _mesh() as (support, provider, port):
        assert support.pool.statistics().connections_opened == 0
        result, _ = await _call(support, port, "Hang", 0.2)
        assert _timed_out(result), result
        with anyio.fail_after(5):
            await provider.reset_seen.wait()
        assert provider.resets == [CANCEL]
        assert support.pool.statistics().connections_opened == 1


async def test_a_request_still_arriving_times_out_under_a_scope() -> None:
    async with _mesh() as (support, provider, port):
        await _call(support, port, "Unary", 5.0)
        result, _ = await _call(support, port, "Hang", 0.2, whole=False)
        assert _timed_out(result), result
        with anyio.fail_after(5):
            await provider.reset_seen.wait()
        assert provider.resets == [CANCEL]


async def test_a_deadline_already_passed_sends_nothing() -> None:
    async with _mesh() as (support, provider, port):
        result, _ = await _call(support, port, "Unary", -0.001)
        assert result.status is Status.TIMEOUT
        assert "passed before the call" in result.detail
        assert provider.streams == 0 and support.pool.statistics().connections_opened == 0


class _Released:
    """A deadline-watch entry that sets an event: the watch fires entries in deadline order."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def cancel(self) -> None:
        self.event.set()


class _SlowCaller(QueueSink):
    """A caller whose stream takes the answer's head only once `released`."""

    def __init__(self, released: anyio.Event) -> None:
        super().__init__()
        self.released = released

    async def send_headers(self, headers: RawHeaders) -> None:
        await self.released.wait()
        await super().send_headers(headers)


async def test_an_answer_wholly_here_when_the_deadline_passes_is_delivered() -> None:
    """The answer arrived whole; the relay is still handing it on when the deadline passes.
    The deadline no longer applies: the caller gets every byte, as over a cancel scope
    (anyio cancels no task whose wait is over). Were the upstream stream reset then, its
    unread message would be dropped and the call would look complete without it."""
    async with _mesh() as (support, _provider, port):
        await _call(support, port, "Unary", 5.0)
        later = _Released()
        watch = support.pool.deadlines
        watch.add(watch.time_in(0.3), later)  # after the call's own deadline, 0.2 s
        result, sink = await _call(support, port, "Unary", 0.2, sink=_SlowCaller(later.event))
        assert (result.status, result.code) == (Status.OK, 0), result
        sink.close()
        assert b"".join(await _drain(sink)) == MESSAGE


async def _drain(sink: QueueSink) -> list[bytes]:
    chunks = []
    while (chunk := await sink.receive()) is not None:
        chunks.append(chunk)
    return chunks
