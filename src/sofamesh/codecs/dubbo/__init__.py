"""Dubbo 2 framing, sans-IO: bytes in, frames out; frames in, bytes out.

Where things are:

- `wire`        the frame layout (ASCII diagram), flags, statuses, response flags
- `frames`      `RequestFrame`, `ResponseFrame`, `encode()`, `heartbeat()`, `reply()`
- `decoder`     `FrameDecoder`: `receive_data()`, `next_frame()` / iteration
- `limits`      `DubboLimits`, the decoder's body size limit
- `errors`      the `DubboProtocolError` hierarchy (fatal vs not, with the header)
- `matcher`     `match()`: is this connection Dubbo?
- `names`       `peek_head()`: path, version, method, descriptor without a full decode
- `body`        Hessian 2 request and response bodies (`RequestBody`, `ResponseBody`)
- `descriptors` JVM parameter descriptors: parse, infer, print

Frames carry their body as bytes; only `body` and `names` look inside, and only
Hessian 2 ones (serialization id 2): other serializations pass through a proxy untouched.
"""

from sofamesh.codecs.dubbo.body import (
    DUBBO_VERSION,
    RequestBody,
    ResponseBody,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_response,
    error_message,
    exception_message,
)
from sofamesh.codecs.dubbo.decoder import FrameDecoder
from sofamesh.codecs.dubbo.errors import (
    BadMagicError,
    BodyError,
    DubboProtocolError,
    FrameTooLargeError,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedSerializationError,
)
from sofamesh.codecs.dubbo.frames import (
    Frame,
    FrameHeader,
    RequestFrame,
    ResponseFrame,
    encode,
    heartbeat,
    heartbeat_reply,
    reply,
)
from sofamesh.codecs.dubbo.limits import DEFAULT_LIMITS, DubboLimits
from sofamesh.codecs.dubbo.matcher import match
from sofamesh.codecs.dubbo.names import Head, attachments_at, attachments_of, peek_head
from sofamesh.codecs.dubbo.wire import ResponseFlag, Serialization, Status

__all__ = [
    "DEFAULT_LIMITS",
    "DUBBO_VERSION",
    "BadMagicError",
    "BodyError",
    "DubboLimits",
    "DubboProtocolError",
    "Frame",
    "FrameDecoder",
    "FrameHeader",
    "FrameTooLargeError",
    "Head",
    "LocalProtocolError",
    "RemoteProtocolError",
    "RequestBody",
    "RequestFrame",
    "ResponseBody",
    "ResponseFlag",
    "ResponseFrame",
    "Serialization",
    "Status",
    "UnsupportedSerializationError",
    "attachments_at",
    "attachments_of",
    "decode_request",
    "decode_response",
    "encode",
    "encode_error",
    "encode_request",
    "encode_response",
    "error_message",
    "exception_message",
    "heartbeat",
    "heartbeat_reply",
    "match",
    "peek_head",
    "reply",
]
