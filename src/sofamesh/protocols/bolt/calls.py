"""What a Bolt client connection's calls are made of: the wait, its errors, the settings.

`CallWaiter` is one call's wait for its response (armed on the pool's
`DeadlineWatch`, woken by the response, the deadline or the connection's end);
`HeartbeatConfig` is the keep-alive's settings, `ConnectionStatistics` a
connection's counts. `BoltClientConnection` (client.py, which re-exports the
public names) runs them.
"""

from __future__ import annotations

import attrs

from sofamesh.codecs.bolt import ResponseFrame
from sofamesh.deadlines import Entry
from sofamesh.protocols.bolt.mapping import ERROR_HEADER
from sofamesh.transport.workers import Waker, wake


@attrs.frozen(kw_only=True)
class HeartbeatConfig:
    """sofa-bolt's client defaults: 15 s idle, 1 s for the ack, 3 misses close."""

    interval: float = attrs.field(default=15.0, validator=attrs.validators.gt(0))
    timeout: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    max_missed: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    enabled: bool = True


class CallTimeoutError(Exception):
    """The call's deadline passed before its response arrived."""


class CallWaiter:
    """One call's wait for its response: a `Waker` (on asyncio a bare future, awaited
    without a wrapper) and what it was woken with."""

    __slots__ = ("entry", "error", "response", "rid", "waker")

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.response: ResponseFrame | None = None
        self.error: Exception | None = None
        self.rid = 0  # the call's id on the connection (`begin`)
        self.entry: Entry | None = None  # its deadline on the watch (`begin`)

    def cancel(self) -> None:
        """The deadline watch's call: the deadline passed, wake the caller."""
        if self.response is None and self.error is None:
            self.error = CallTimeoutError("the deadline passed")
        wake(self.waker)


@attrs.frozen
class ConnectionStatistics:
    in_flight: int
    calls: int
    heartbeats_sent: int
    heartbeats_missed: int
    late_responses: int


def drains(frame: ResponseFrame) -> bool:
    """Whether a busy answer says the server drains (a mesh server's mark on it)."""
    return (ERROR_HEADER, "unavailable") in frame.headers()
