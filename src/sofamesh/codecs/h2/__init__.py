"""HTTP/2, sans-IO: events in `events`; `H2Codec` is the lean codec (`lean.py`), and
`ReferenceH2Codec` (`connection.py`, on the h2 state machine) its differential reference,
imported on first use: the h2 library is about 1 MB a sidecar does not otherwise load."""

from typing import TYPE_CHECKING, Any

from sofamesh.codecs.h2.errors import H2ConnectionError, LocalProtocolError, StreamGone
from sofamesh.codecs.h2.events import (
    DataReceived,
    Event,
    GoAway,
    HeadersReceived,
    RawHeaders,
    SettingsChanged,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from sofamesh.codecs.h2.frames import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
)
from sofamesh.codecs.h2.lean import LeanH2Codec
from sofamesh.codecs.h2.limits import DEFAULT_H2_LIMITS, H2Limits
from sofamesh.codecs.h2.matcher import PREFACE, looks_like_h2

if TYPE_CHECKING:
    from sofamesh.codecs.h2.connection import ReferenceH2Codec

H2Codec = LeanH2Codec


def __getattr__(name: str) -> Any:
    if name == "ReferenceH2Codec":
        from sofamesh.codecs.h2.connection import ReferenceH2Codec

        return ReferenceH2Codec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CANCEL",
    "DEFAULT_H2_LIMITS",
    "ENHANCE_YOUR_CALM",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PREFACE",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "DataReceived",
    "Event",
    "GoAway",
    "H2Codec",
    "H2ConnectionError",
    "H2Limits",
    "HeadersReceived",
    "LeanH2Codec",
    "LocalProtocolError",
    "RawHeaders",
    "ReferenceH2Codec",
    "SettingsChanged",
    "StreamGone",
    "StreamReset",
    "TrailersReceived",
    "WindowOpened",
    "looks_like_h2",
]
