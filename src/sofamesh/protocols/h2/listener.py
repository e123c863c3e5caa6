"""The HTTP/2 listener: one port for h2c, the protocols carried on HTTP/2 streams, and HTTP/1.1.

Each stream goes to the first plugged protocol whose matcher takes its request
headers (gRPC plugs itself in for its content types, `protocols.grpc`), and
every other stream to plain HTTP over HTTP/2 (`H2HttpHandler`). Connections
that open with an HTTP/1.1 request instead of the h2c preface are sniffed and
handed to an `Http1Server` with the same HTTP handler, so one port serves both.
A protocol with a framing of its own (Dubbo) plugs in by its first bytes
(`ConnectionProtocol`): the connections it claims go to its own server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from sofamesh.chain import Handler
from sofamesh.codecs.h2 import H2Limits, RawHeaders
from sofamesh.config.model import LimitsConfig
from sofamesh.protocols.base import Route
from sofamesh.protocols.h2.http import H2HttpHandler
from sofamesh.protocols.h2.server import H2Handler, H2Server, PrefixMatch
from sofamesh.protocols.h2.stream import H2Stream
from sofamesh.protocols.http.support import InboundHttpHandler, OutboundHttpHandler, http1_server

StreamMatch = Callable[[RawHeaders], bool]


class StreamProtocol(Protocol):
    """A protocol carried on HTTP/2 streams: which streams are its, and its stream handlers."""

    def matches(self, headers: RawHeaders) -> bool: ...

    def outbound_streams(self, chain: Handler, app: str) -> H2Handler: ...

    def inbound_streams(self, route: Route) -> H2Handler: ...


class ConnectionProtocol(Protocol):
    """A protocol sniffed on this port by its first bytes, served by its own servers."""

    def matches_connection(self, prefix: bytes) -> bool | None: ...

    def outbound_server(self, chain: Handler, app: str, limits: LimitsConfig | None) -> Any: ...

    def inbound_server(self, route: Route, limits: LimitsConfig | None) -> Any: ...


class H2Listener:
    """Dispatches each stream by its request headers: a plugged protocol's, else plain HTTP."""

    def __init__(self, plugs: Sequence[tuple[StreamMatch, H2Handler]], http: H2Handler) -> None:
        self._plugs = tuple(plugs)
        self._http = http

    def __call__(self, stream: H2Stream) -> Awaitable[None]:
        """The chosen handler's awaitable, returned: no frame of its own per stream."""
        headers = stream.headers
        assert headers is not None
        for matches, handler in self._plugs:
            if matches(headers):
                return handler(stream)
        return self._http(stream)


# The LimitsConfig fields an HTTP/2 listener honours (H2Limits' names).
_H2_FIELDS = (
    "max_concurrent_streams",
    "max_frame_size",
    "stream_window",
    "connection_window",
    "max_outbound_control_frames",
    "max_inbound_window_update_frames_per_data_frame_sent",
    "max_inbound_priority_frames_per_stream",
    "premature_reset_total_stream_count",
)


def h2_limits(limits: LimitsConfig | None) -> H2Limits:
    """The HTTP/2 limits of a listener: its header size and its h2 fields."""
    cfg = limits or LimitsConfig()
    extra = {f: getattr(cfg, f) for f in _H2_FIELDS}
    return H2Limits(max_header_list_size=cfg.max_header_bytes, **extra)


def h2_server(
    plugs: Sequence[tuple[StreamMatch, H2Handler]],
    http: OutboundHttpHandler | InboundHttpHandler,
    limits: LimitsConfig | None,
    sniffed: Sequence[tuple[PrefixMatch, Any]] = (),
) -> H2Server:
    """The server of an `h2` or `grpc` listener: `plugs` and plain HTTP on h2c, HTTP/1.1 beside."""
    cfg = limits or LimitsConfig()
    slashes = cfg.path_with_escaped_slashes_action
    plain = H2HttpHandler(http, cfg.max_body_bytes, slashes, cfg.stream_threshold_bytes)
    streams = H2Listener(plugs, plain)
    return H2Server(
        streams,
        h2_limits(cfg),
        http1=http1_server(http, cfg),
        sniffed=sniffed,
        max_connections=cfg.max_connections,
        idle_timeout=cfg.idle_timeout,
        max_connections_per_source=cfg.max_connections_per_source,
        send_timeout=cfg.send_timeout,
    )
