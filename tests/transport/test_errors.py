"""failure_of: the one mapping from transport failures to neutral results."""

from __future__ import annotations

from sofamesh.model import Status
from sofamesh.transport.errors import (
    ConnectError,
    PoolClosedError,
    UpstreamProtocolError,
    UpstreamResetError,
    failure_of,
)


def test_a_connect_failure_is_retryable_elsewhere() -> None:
    result = failure_of(ConnectError("cannot connect to 10.0.0.1:80: refused"), "orders", "h", 1)
    assert result.status is Status.CONNECT_FAILED
    assert result.detail == "orders: cannot connect to 10.0.0.1:80: refused"


def test_every_other_transport_failure_is_a_reset_naming_the_endpoint() -> None:
    for exc in (UpstreamResetError("eof"), UpstreamProtocolError("bad"), PoolClosedError("x")):
        result = failure_of(exc, "orders", "10.0.0.1", 80)
        assert result.status is Status.UPSTREAM_RESET
        assert result.detail == f"orders: 10.0.0.1:80 failed mid-call: {exc}"
