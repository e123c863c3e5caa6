"""What an HTTP/2 peer did, as the codec reports it (frozen; headers stay bytes).

The codec folds h2's separate end-of-stream events into the event that ended
the stream (`end_stream`), and reports nothing for what it handled itself
(SETTINGS, PING, priority, frames on streams it already reset).
"""

from __future__ import annotations

import attrs

RawHeaders = list[tuple[bytes, bytes]]


@attrs.frozen(slots=True, kw_only=True)
class HeadersReceived:
    """A request (server side) or a final response (client side) began."""

    stream_id: int
    headers: RawHeaders
    end_stream: bool


@attrs.frozen(slots=True, kw_only=True)
class TrailersReceived:
    """The trailing header block, which always ends the stream."""

    stream_id: int
    headers: RawHeaders


@attrs.frozen(slots=True, kw_only=True)
class DataReceived:
    """Body bytes; `flow_length` (padding included) must be acknowledged once consumed."""

    stream_id: int
    data: bytes
    flow_length: int
    end_stream: bool


@attrs.frozen(slots=True, kw_only=True)
class StreamReset:
    """The stream is gone: reset by the peer (`remote`) or by us for a stream error."""

    stream_id: int
    error_code: int
    remote: bool


@attrs.frozen(slots=True, kw_only=True)
class WindowOpened:
    """The peer granted send window on `stream_id` (0: the whole connection)."""

    stream_id: int


@attrs.frozen(slots=True, kw_only=True)
class GoAway:
    """The peer will process no stream above `last_stream_id`; the connection is ending."""

    error_code: int
    last_stream_id: int
    debug: bytes


@attrs.frozen(slots=True, kw_only=True)
class SettingsChanged:
    """The peer's SETTINGS changed what we may do (max concurrent streams, windows)."""

    max_concurrent_streams: int | None


Event = (
    HeadersReceived
    | TrailersReceived
    | DataReceived
    | StreamReset
    | WindowOpened
    | GoAway
    | SettingsChanged
)
