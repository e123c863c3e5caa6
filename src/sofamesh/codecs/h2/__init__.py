"""HTTP/2, sans-IO: events in `events`; `H2Codec` is the lean codec (`lean.py`), and
`ReferenceH2Codec` (`connection.py`, on the h2 state machine) its differential reference.
Every name is imported from its module on first use: the h2 library is about 1 MB a
sidecar does not otherwise load, and the lean codec with HPACK about 0.8 MB that one
serving no HTTP/2 yet does not need."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sofamesh.codecs.h2.connection import ReferenceH2Codec
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

    H2Codec = LeanH2Codec

# Each name's module, imported on first use: config reads `limits` without the codec
# (and HPACK's tables) loading, so a sidecar serving no HTTP/2 yet does not hold them.
_FROM = {
    "errors": ("H2ConnectionError", "LocalProtocolError", "StreamGone"),
    "events": (
        "DataReceived", "Event", "GoAway", "HeadersReceived", "RawHeaders", "SettingsChanged",
        "StreamReset", "TrailersReceived", "WindowOpened",
    ),
    "frames": (
        "CANCEL", "ENHANCE_YOUR_CALM", "INTERNAL_ERROR", "NO_ERROR", "PROTOCOL_ERROR",
        "REFUSED_STREAM",
    ),
    "lean": ("LeanH2Codec",),
    "limits": ("DEFAULT_H2_LIMITS", "H2Limits"),
    "matcher": ("PREFACE", "looks_like_h2"),
    "connection": ("ReferenceH2Codec",),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _FROM.items() for name in names}


def __getattr__(name: str) -> Any:
    if name == "H2Codec":
        name = "LeanH2Codec"
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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
