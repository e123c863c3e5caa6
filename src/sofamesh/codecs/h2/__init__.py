"""HTTP/2 on the `h2` state machine, sans-IO: events in `events`, the codec in `connection`."""

from sofamesh.codecs.h2.connection import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    H2Codec,
    H2ConnectionError,
    StreamGone,
)
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
from sofamesh.codecs.h2.limits import DEFAULT_H2_LIMITS, H2Limits
from sofamesh.codecs.h2.matcher import PREFACE, looks_like_h2

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
    "RawHeaders",
    "SettingsChanged",
    "StreamGone",
    "StreamReset",
    "TrailersReceived",
    "WindowOpened",
    "looks_like_h2",
]
