"""Transport failures, named by where the exchange broke.

Callers map them to the neutral `Status`: `ConnectError` is CONNECT_FAILED
(the request never left, so another endpoint may take it), the rest are
UPSTREAM_RESET (the upstream may have acted on the request).
"""

from __future__ import annotations


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
