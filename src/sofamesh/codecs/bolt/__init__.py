"""SOFA Bolt v1 and v2 framing, sans-IO: bytes in, frames out; frames in, bytes out.

Where things are:

- `wire`        the frame layout (ASCII diagrams) and the fixed-header reader
- `codes`       protocol, command type/code, every response status, codec bytes
- `frames`      `RequestFrame`, `ResponseFrame` and constructors (`request`, `reply` ...)
- `headers`     the header map (SOFARPC's SimpleMapSerializer)
- `decoder`     `FrameDecoder`: `receive_data()`, `next_frame()` / iteration
- `receive_buffer` the decoder's queue of received chunks (copies each field once)
- `encoder`     `encode()`, and `with_request_id()` / `with_timeout()` for proxies
- `errors`      the `BoltProtocolError` hierarchy (fatal vs skippable, with the header)
- `limits`      `BoltLimits`, the decoder's size limits
- `matcher`     `match()`: is this connection Bolt?
- `request_ids` `RequestIds`: id allocation and the table of calls in flight

The body (Hessian, protobuf ...) is never interpreted here; it stays `bytes`.
"""

from sofamesh.codecs.bolt.codes import (
    BOLT_V1,
    BOLT_V2,
    SOFA_REQUEST_CLASS,
    SOFA_RESPONSE_CLASS,
    Codec,
    CommandCode,
    CommandType,
    FrameKind,
    ResponseStatus,
)
from sofamesh.codecs.bolt.decoder import FrameDecoder
from sofamesh.codecs.bolt.encoder import (
    encode,
    encode_request_as,
    encode_v1_reply,
    frame_length,
    read_request_id,
    with_request_id,
    with_timeout,
)
from sofamesh.codecs.bolt.errors import (
    BoltProtocolError,
    CrcMismatchError,
    FrameTooLargeError,
    HeaderMapError,
    InvalidLengthError,
    LocalProtocolError,
    RemoteProtocolError,
    TruncatedFrameError,
    UnknownCommandCodeError,
    UnknownCommandTypeError,
    UnknownProtocolError,
    UnsupportedVersionError,
)
from sofamesh.codecs.bolt.frames import (
    Frame,
    FrameHeader,
    RequestFrame,
    ResponseFrame,
    heartbeat,
    heartbeat_ack,
    reply,
    request,
)
from sofamesh.codecs.bolt.headers import HeaderItems, encode_header_map, parse_header_map
from sofamesh.codecs.bolt.limits import DEFAULT_LIMITS, BoltLimits
from sofamesh.codecs.bolt.matcher import Match, match
from sofamesh.codecs.bolt.request_ids import RequestIds, RequestIdsExhaustedError

__all__ = [
    "BOLT_V1",
    "BOLT_V2",
    "DEFAULT_LIMITS",
    "SOFA_REQUEST_CLASS",
    "SOFA_RESPONSE_CLASS",
    "BoltLimits",
    "BoltProtocolError",
    "Codec",
    "CommandCode",
    "CommandType",
    "CrcMismatchError",
    "Frame",
    "FrameDecoder",
    "FrameHeader",
    "FrameKind",
    "FrameTooLargeError",
    "HeaderItems",
    "HeaderMapError",
    "InvalidLengthError",
    "LocalProtocolError",
    "Match",
    "RemoteProtocolError",
    "RequestFrame",
    "RequestIds",
    "RequestIdsExhaustedError",
    "ResponseFrame",
    "ResponseStatus",
    "TruncatedFrameError",
    "UnknownCommandCodeError",
    "UnknownCommandTypeError",
    "UnknownProtocolError",
    "UnsupportedVersionError",
    "encode",
    "encode_header_map",
    "encode_request_as",
    "encode_v1_reply",
    "frame_length",
    "heartbeat",
    "heartbeat_ack",
    "match",
    "parse_header_map",
    "read_request_id",
    "reply",
    "request",
    "with_request_id",
    "with_timeout",
]
