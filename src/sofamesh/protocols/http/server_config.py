"""What the HTTP/1.1 server is told and tells: its config, its statistics, who a connection's
peer is, and the handler a verified peer gets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from sofamesh.codecs.http1 import DEFAULT_LIMITS, Http1Limits, HttpRequest, HttpResponse


@attrs.frozen(slots=True)
class ConnInfo:
    """Who is on the other end of a server connection (the same object for each request)."""

    id: int
    peer: str  # "host:port" of the client
    local: str  # "host:port" the connection was accepted on
    identity: str = ""  # the client's SPIFFE ID, verified by mutual TLS; "" on plaintext


Http1Handler = Callable[[HttpRequest, ConnInfo], Awaitable[HttpResponse]]


def handler_for(handler: Http1Handler, identity: str) -> Http1Handler:
    """The handler of a connection whose peer is `identity`, verified (mutual TLS).

    A handler that acts on who calls (the inbound listeners) offers
    `for_peer(identity)`; it is asked once per connection, so a plaintext
    connection's requests go straight to `handler`, without a check each.
    """
    for_peer = getattr(handler, "for_peer", None)
    return handler if for_peer is None else for_peer(identity)


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be positive, got {value}")


@attrs.frozen(slots=True)
class Http1ServerConfig:
    """Server limits; every timeout is in seconds.

    Defaults follow nginx where it has one (`keepalive_timeout` 75 s,
    `client_header_timeout`, `client_body_timeout` and `send_timeout` 60 s), shortened for
    a sidecar whose peers are local: idle connections cost memory, and a slow
    head is more likely an attack than a slow network.
    """

    limits: Http1Limits = DEFAULT_LIMITS
    max_connections: int = attrs.field(default=10_000, validator=_positive)
    keepalive_timeout: float = attrs.field(default=60.0, validator=_positive)
    header_timeout: float = attrs.field(default=10.0, validator=_positive)
    body_timeout: float = attrs.field(default=30.0, validator=_positive)
    linger_timeout: float = attrs.field(default=2.0, validator=_positive)
    send_timeout: float = attrs.field(default=60.0, validator=_positive)
    max_connections_per_source: int = 0  # 0: a tenth of max_connections (transport/admission)


@attrs.frozen(slots=True)
class ServerStatistics:
    active_connections: int
    accepted_connections: int  # admitted since start (the rejected ones are not counted)
    rejected_connections: int  # over max_connections, closed on accept
    evicted_connections: int  # idle ones closed to make room (transport/admission.py)
    requests_served: int
    protocol_errors: int  # malformed or oversized requests, timeouts mid-request
    handler_errors: int  # handler raised (answered with 500)
    draining: bool
