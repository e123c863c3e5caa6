"""The Dubbo 2 frame: a 16-byte header, then the body (Hessian 2 values, usually).

::

     0      1      2       3       4                         12                16
    +------+------+-------+-------+-------------------------+-----------------+
    | 0xda | 0xbb | flags |status |   request id (8 bytes)  | body length (4) |  body ...
    +------+------+-------+-------+-------------------------+-----------------+

    flags:  0x80 request  |  0x40 two-way  |  0x20 event  |  0x1f serialization id

- `status` is used by responses only (requests send 0): `Status` below.
- the request id is a Java `long` (Dubbo's `AtomicLong`); a response echoes it.
- the body length is a Java `int`, big-endian; Dubbo's `payload` limit (8 MiB) applies.
- an event with a null body (Hessian `N`) is a heartbeat; its reply echoes the id.

Request body, in sequence: Dubbo version, service path, service version, method name,
parameter descriptor (JVM descriptors), each argument, then the attachments map.
Response body (status OK): a response flag (`ResponseFlag`) then the value, the
exception, or nothing, and with the *_WITH_ATTACHMENTS flags an attachments map.
A response whose status is not OK carries a Hessian string: the error message.
Reference: Dubbo's `ExchangeCodec` and `DubboCodec` (dubbo 2.7).
"""

from __future__ import annotations

import enum
import struct

HEADER = struct.Struct(">HBBQI")  # magic, flags, status, request id, body length
HEADER_SIZE = HEADER.size  # 16
MAGIC = 0xDABB
MAGIC_BYTES = b"\xda\xbb"

FLAG_REQUEST = 0x80
FLAG_TWO_WAY = 0x40
FLAG_EVENT = 0x20
SERIALIZATION_MASK = 0x1F

MAX_INT_LENGTH = 2**31 - 1  # the body length is a Java int
MAX_REQUEST_ID = 2**64 - 1

HEARTBEAT_BODY = b"N"  # Hessian 2 null: the body of a heartbeat and of its reply


class Serialization(enum.IntEnum):
    """Dubbo's serialization ids (`Constants.*_SERIALIZATION_ID`); only Hessian 2 is decoded."""

    HESSIAN2 = 2
    JAVA = 3
    COMPACTED_JAVA = 4
    FASTJSON = 6
    NATIVE_JAVA = 7
    KRYO = 8
    FST = 9
    PROTOSTUFF = 12
    AVRO = 11
    GSON = 16
    PROTOBUF_JSON = 21


class Status(enum.IntEnum):
    """A response's status byte (`org.apache.dubbo.remoting.exchange.Response`)."""

    OK = 20
    CLIENT_TIMEOUT = 30
    SERVER_TIMEOUT = 31
    CHANNEL_INACTIVE = 35
    BAD_REQUEST = 40
    BAD_RESPONSE = 50
    SERVICE_NOT_FOUND = 60
    SERVICE_ERROR = 70
    SERVER_ERROR = 80
    CLIENT_ERROR = 90
    SERVER_THREADPOOL_EXHAUSTED_ERROR = 100


class ResponseFlag(enum.IntEnum):
    """The first value of an OK response's body (`DubboCodec.RESPONSE_*`)."""

    EXCEPTION = 0
    VALUE = 1
    NULL = 2
    EXCEPTION_WITH_ATTACHMENTS = 3
    VALUE_WITH_ATTACHMENTS = 4
    NULL_WITH_ATTACHMENTS = 5

    @property
    def has_attachments(self) -> bool:
        return self >= ResponseFlag.EXCEPTION_WITH_ATTACHMENTS

    @property
    def base(self) -> ResponseFlag:
        """The flag without attachments (EXCEPTION, VALUE or NULL)."""
        return ResponseFlag(self % 3)
