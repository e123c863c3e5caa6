"""A caller that leaves while its answer is relayed is no failure of the provider's.

Its reset can land after the provider's answer woke the relay and before the reset's
cancellation reaches the call: writing to the caller's stream then fails. That is the
caller's end, not the provider's (which answered): the call ends as gRPC's CANCELLED with
`Status.OK`, so outlier ejection, breakers and retries never count it against the provider
(a load generator that resets its streams at the end of a run once got nginx ejected).
"""

from __future__ import annotations

import pytest
from grpc_support import Peers

from sofamesh.clock import MonotonicClock
from sofamesh.codecs.grpc import GrpcStatus
from sofamesh.codecs.h2 import CANCEL, RawHeaders
from sofamesh.config.model import PolicyConfig
from sofamesh.model import Invocation, Result, Status
from sofamesh.protocols.grpc.support import GrpcSupport
from sofamesh.protocols.h2.call import QueueSink, QueueSource, ReplayableBody, StreamCall
from sofamesh.protocols.h2.stream import StreamResetError
from sofamesh.protocols.h2.support import H2Support

pytestmark = pytest.mark.anyio


class _LeftAtHead(QueueSink):
    """A caller whose stream was reset before its answer's head could be written."""

    async def send_headers(self, headers: RawHeaders) -> None:
        self.committed = True
        raise StreamResetError(CANCEL, "the caller reset the stream")


class _LeftAtData(QueueSink):
    """A caller whose stream was lost after the head, before the message."""

    async def send_data(self, data: bytes) -> None:
        raise StreamResetError(CANCEL, "the caller's connection was lost")


async def _call(peers: Peers, port: int, sink: QueueSink) -> Result:
    h2 = H2Support(PolicyConfig(), MonotonicClock())
    async with h2, GrpcSupport(PolicyConfig(), MonotonicClock(), h2) as support:
        source = QueueSource()
        body = peers.echo.Msg(text="x").SerializeToString()
        await source.send(b"\0" + len(body).to_bytes(4, "big") + body)
        source.end()
        call = StreamCall("/sofamesh.test.Echo/Unary", "", ReplayableBody(source), sink)
        inv = Invocation("grpc", "sofamesh.test.Echo", call.path, None, "", None, "", call)
        return await support.send("127.0.0.1", port, inv)


@pytest.mark.parametrize("sink", [_LeftAtHead, _LeftAtData])
async def test_a_caller_who_left_mid_answer_is_no_failure_of_the_provider(
    peers: Peers, grpcio_server: int, sink: type[QueueSink]
) -> None:
    result = await _call(peers, grpcio_server, sink())
    assert result.status is Status.OK and not result.status.is_failure
    assert result.code == GrpcStatus.CANCELLED
    assert "caller left" in result.detail


async def test_a_caller_still_there_gets_the_answer(peers: Peers, grpcio_server: int) -> None:
    sink = QueueSink()
    result = await _call(peers, grpcio_server, sink)
    assert (result.status, result.code) == (Status.OK, 0)
    assert sink.committed
