"""The numbers Bolt puts on the wire: protocol, command type and code, status, codec.

Values are taken from sofa-bolt (`RpcProtocol`, `RpcProtocolV2`, `RpcCommandType`,
`CommonCommandCode`, `RpcCommandCode`, `ResponseStatus`, `SerializerManager`) and
SOFARPC (`RemotingConstants.SERIALIZE_CODE_*`). They are `IntEnum`s so a frame field
holding a known value compares equal to the plain int read from the wire.
"""

from __future__ import annotations

import enum

BOLT_V1 = 1
"""Protocol byte of Bolt v1 (`RpcProtocol.PROTOCOL_CODE`)."""
BOLT_V2 = 2
"""Protocol byte of Bolt v2 (`RpcProtocolV2.PROTOCOL_CODE`)."""

SOFA_REQUEST_CLASS = b"com.alipay.sofa.rpc.core.request.SofaRequest"
"""The class-name field SOFARPC writes on every request."""
SOFA_RESPONSE_CLASS = b"com.alipay.sofa.rpc.core.response.SofaResponse"
"""The class-name field SOFARPC writes on every response (errors included)."""


class CommandType(enum.IntEnum):
    """The `type` byte (sofa-bolt `RpcCommandType`)."""

    RESPONSE = 0
    REQUEST = 1
    REQUEST_ONEWAY = 2


class CommandCode(enum.IntEnum):
    """The `cmdcode` short (`CommonCommandCode.HEARTBEAT`, `RpcCommandCode`)."""

    HEARTBEAT = 0
    RPC_REQUEST = 1
    RPC_RESPONSE = 2


class ResponseStatus(enum.IntEnum):
    """Every `respstatus` value sofa-bolt defines (`com.alipay.remoting.ResponseStatus`).

    Note the jump after 0x0009: CONNECTION_CLOSED is 0x0010, not 0x000A.
    """

    SUCCESS = 0x0000
    ERROR = 0x0001
    SERVER_EXCEPTION = 0x0002  # the provider threw; the body is an RpcServerException
    UNKNOWN = 0x0003
    SERVER_THREADPOOL_BUSY = 0x0004
    ERROR_COMM = 0x0005
    NO_PROCESSOR = 0x0006  # no processor registered for the request class
    TIMEOUT = 0x0007
    CLIENT_SEND_ERROR = 0x0008
    CODEC_EXCEPTION = 0x0009
    CONNECTION_CLOSED = 0x0010
    SERVER_SERIAL_EXCEPTION = 0x0011
    SERVER_DESERIAL_EXCEPTION = 0x0012


class Codec(enum.IntEnum):
    """The `codec` byte: how the content (body) is serialized.

    The frame codec never interprets the body; this only names the byte.
    """

    HESSIAN2 = 1  # sofa-bolt SerializerManager.Hessian2; SOFARPC SERIALIZE_CODE_HESSIAN
    JAVA = 2  # SOFARPC SERIALIZE_CODE_JAVA
    FURY = 3  # sofa-bolt SerializerManager.Fury (recent releases)
    HESSIAN2_LEGACY = 4  # SOFARPC SERIALIZE_CODE_HESSIAN2, deprecated in favour of 1
    PROTOBUF = 11  # SOFARPC SERIALIZE_CODE_PROTOBUF


class FrameKind(enum.Enum):
    """What a frame is, derived from its type byte and command code."""

    REQUEST = "request"
    ONEWAY = "oneway"
    HEARTBEAT = "heartbeat"
    RESPONSE = "response"
    HEARTBEAT_ACK = "heartbeat_ack"


STATUS_BY_CODE: dict[int, ResponseStatus] = {s.value: s for s in ResponseStatus}
_CODEC_BY_CODE: dict[int, Codec] = {c.value: c for c in Codec}


def status_of(code: int) -> int:
    """Return the `ResponseStatus` member for `code`, or `code` itself if unknown."""
    return STATUS_BY_CODE.get(code, code)


def codec_of(code: int) -> int:
    """Return the `Codec` member for `code`, or `code` itself if unknown."""
    return _CODEC_BY_CODE.get(code, code)
