"""Transport failures, named by where the exchange broke.

Callers map them to the neutral `Status`: `ConnectError` is CONNECT_FAILED
(the request never left, so another endpoint may take it), the rest are
UPSTREAM_RESET (the upstream may have acted on the request).
"""

from __future__ import annotations

from sofamesh.model import Result, Status


class TransportError(Exception):
    """Base class: the exchange with `host:port` failed below HTTP semantics."""


class ConnectError(TransportError):
    """No connection: refused, unreachable, DNS failure or connect timeout.

    The request was never sent, so retrying it elsewhere is safe.
    """


class UpstreamResetError(TransportError):
    """The connection was lost after the request was (maybe partly) sent."""


class UpstreamProtocolError(TransportError):
    """The upstream answered with something that is not valid HTTP/1.1, or over a limit."""


class PoolClosedError(TransportError):
    """The pool was closed before or during the exchange."""


def failure_of(exc: TransportError, service: str, host: str, port: int) -> Result:
    """The neutral result of a call to `host:port` that broke in the transport.

    Every protocol's client maps its failures here, so a connect failure is
    retried elsewhere, and a reset is not, whichever protocol carried the call.
    """
    if isinstance(exc, ConnectError):  # its message already names host:port
        return Result.failure(Status.CONNECT_FAILED, f"{service}: {exc}")
    return Result.failure(Status.UPSTREAM_RESET, f"{service}: {host}:{port} failed mid-call: {exc}")
