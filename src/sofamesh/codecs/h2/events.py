"""What an HTTP/2 peer did, as the codec reports it (immutable; headers stay bytes).

The codec folds h2's separate end-of-stream events into the event that ended
the stream (`end_stream`), and reports nothing for what it handled itself
(SETTINGS, PING, priority, frames on streams it already reset).

Events are named tuples: the lean codec builds a few per call, positionally,
where an attrs frozen class built with keywords cost a keyword call and one
`object.__setattr__` per field. Keywords still work. Equality also compares the
event's type (`_typed`), so `WindowOpened(0)` is never `SettingsChanged(0)`
although both are `(0,)`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

RawHeaders = list[tuple[bytes, bytes]]

_T = TypeVar("_T")


def _typed(cls: type[_T]) -> type[_T]:
    """Equal only to an event of the same type with equal fields (not to a bare tuple)."""

    def __eq__(self: tuple[Any, ...], other: object) -> bool:
        return type(self) is type(other) and tuple.__eq__(self, other)

    def __ne__(self: tuple[Any, ...], other: object) -> bool:
        return not __eq__(self, other)

    def __hash__(self: tuple[Any, ...]) -> int:
        return hash((type(self), tuple(self)))

    cls.__eq__ = __eq__  # type: ignore[assignment,method-assign]
    cls.__ne__ = __ne__  # type: ignore[assignment,method-assign]
    cls.__hash__ = __hash__  # type: ignore[assignment,method-assign]
    return cls


@_typed
class HeadersReceived(NamedTuple):
    """A request (server side) or a final response (client side) began."""

    stream_id: int
    headers: RawHeaders
    end_stream: bool


@_typed
class TrailersReceived(NamedTuple):
    """The trailing header block, which always ends the stream."""

    stream_id: int
    headers: RawHeaders


@_typed
class DataReceived(NamedTuple):
    """Body bytes; `flow_length` (padding included) must be acknowledged once consumed."""

    stream_id: int
    data: bytes
    flow_length: int
    end_stream: bool


@_typed
class StreamReset(NamedTuple):
    """The stream is gone: reset by the peer (`remote`) or by us for a stream error."""

    stream_id: int
    error_code: int
    remote: bool


@_typed
class WindowOpened(NamedTuple):
    """The peer granted send window on `stream_id` (0: the whole connection)."""

    stream_id: int


@_typed
class GoAway(NamedTuple):
    """The peer will process no stream above `last_stream_id`; the connection is ending."""

    error_code: int
    last_stream_id: int
    debug: bytes


@_typed
class SettingsChanged(NamedTuple):
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
