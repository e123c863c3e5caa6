"""gRPC over HTTP/2, the parts that are not HTTP/2: message framing, deadlines, status codes.

Message framing (gRPC PROTOCOL-HTTP2.md, "Length-Prefixed-Message"), repeated
in the DATA frames of a stream, with no relation to frame boundaries:

    +------------+---------------------------+---------------------------+
    | flag (1 B) | length (4 B, big endian)  | message (length bytes)    |
    +------------+---------------------------+---------------------------+
      0: plain, 1: compressed with the stream's grpc-encoding

`grpc-timeout` is "TimeoutValue TimeoutUnit": at most 8 ASCII digits and one
of H M S m u n. Statuses travel in `grpc-status` (a decimal code) and
`grpc-message` (percent-encoded UTF-8) in the trailers, or in the response
headers of a "Trailers-Only" response.

This module is sans-IO: bytes in, values out; the mesh's neutral `Status`
maps to and from the gRPC codes here, nowhere else. Request and response heads
(what the mesh reads from them, what a hop forwards) are in `grpc_heads.py`.
"""

from __future__ import annotations

import enum
import math
import struct
from urllib.parse import quote, unquote

import attrs

from sofamesh.model import Status

CONTENT_TYPE = "application/grpc"
PREFIX = struct.Struct(">BI")
PREFIX_SIZE = PREFIX.size
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024  # grpc-core's default max receive message length


class GrpcStatus(enum.IntEnum):
    """The canonical codes (grpc/doc/statuscodes.md)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GrpcFramingError(Exception):
    """A peer's message stream is not valid gRPC framing, or a message is over the limit."""

    def __init__(self, status: GrpcStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# -- messages ---------------------------------------------------------------------------


def encode_message(message: bytes, compressed: bool = False) -> bytes:
    """One Length-Prefixed-Message."""
    return PREFIX.pack(1 if compressed else 0, len(message)) + message


class MessageDecoder:
    """Splits a stream of DATA payloads into messages; `max_message` bounds each one.

    A message over the limit is RESOURCE_EXHAUSTED (what grpc-core answers to
    "received message larger than max"), decided from its prefix before the
    body is buffered. Compressed messages need a codec the mesh does not
    negotiate, so they are INTERNAL unless `allow_compressed` (a proxy that
    only forwards them).
    """

    __slots__ = ("_allow_compressed", "_buf", "_max")

    def __init__(
        self, max_message: int = DEFAULT_MAX_MESSAGE, *, allow_compressed: bool = False
    ) -> None:
        self._buf = bytearray()
        self._max = max_message
        self._allow_compressed = allow_compressed

    def feed(self, data: bytes) -> list[bytes]:
        """Every message completed by `data`, in order."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        start = 0
        while len(buf) - start >= PREFIX_SIZE:
            flag, length = PREFIX.unpack_from(buf, start)
            self._check(flag, length)
            end = start + PREFIX_SIZE + length
            if end > len(buf):
                break
            out.append(bytes(buf[start + PREFIX_SIZE : end]))
            start = end
        if start:
            del buf[:start]
        return out

    def _check(self, flag: int, length: int) -> None:
        if flag > 1:
            raise GrpcFramingError(GrpcStatus.INTERNAL, f"bad message flag {flag}")
        if flag == 1 and not self._allow_compressed:
            raise GrpcFramingError(GrpcStatus.INTERNAL, "compressed message without an encoding")
        if length > self._max:
            raise GrpcFramingError(
                GrpcStatus.RESOURCE_EXHAUSTED,
                f"message of {length} bytes is larger than the limit of {self._max}",
            )

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held back (non-zero at end of stream: truncated)."""
        return len(self._buf)


# -- grpc-timeout -----------------------------------------------------------------------

_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_MAX_DIGITS = 99_999_999


def parse_timeout(value: str) -> float | None:
    """Seconds from a `grpc-timeout` value, or None if it is malformed."""
    if not 2 <= len(value) <= 9:
        return None
    digits, unit = value[:-1], value[-1]
    if not digits.isascii() or not digits.isdigit() or unit not in _UNITS:
        return None
    return int(digits) * _UNITS[unit]


def format_timeout(seconds: float) -> str:
    """The finest unit that fits 8 digits, rounding up so a deadline is never shortened."""
    if 0.1 <= seconds < 99.0:  # the usual deadline: too long for nanoseconds, fits micro
        return f"{math.ceil(seconds / 1e-6 - 1e-6)}u"
    seconds = max(seconds, 0.0)
    for unit, scale in (("n", 1e-9), ("u", 1e-6), ("m", 1e-3), ("S", 1.0), ("M", 60.0)):
        count = math.ceil(seconds / scale - 1e-6)  # up, but not for float noise
        if count <= _MAX_DIGITS:
            return f"{count}{unit}"
    return f"{min(math.ceil(seconds / 3600.0), _MAX_DIGITS)}H"


# -- grpc-message -----------------------------------------------------------------------

# PROTOCOL-HTTP2.md: Percent-Byte-Unencoded is 0x20-0x7E except '%'.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def encode_grpc_message(text: str) -> str:
    return quote(text, safe=_SAFE)


def decode_grpc_message(value: str) -> str:
    return unquote(value, errors="replace")


# -- status mapping ---------------------------------------------------------------------

# What the mesh answers for its own failures (the rest follow
# Envoy's local replies translated by grpc's HTTP mapping).
STATUS_TO_GRPC = {
    Status.OK: GrpcStatus.OK,
    Status.APP_ERROR: GrpcStatus.UNKNOWN,
    Status.NO_ENDPOINT: GrpcStatus.UNAVAILABLE,
    Status.CONNECT_FAILED: GrpcStatus.UNAVAILABLE,
    Status.UPSTREAM_RESET: GrpcStatus.UNAVAILABLE,
    Status.TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
    Status.BAD_REQUEST: GrpcStatus.INTERNAL,
    Status.RATE_LIMITED: GrpcStatus.RESOURCE_EXHAUSTED,
    Status.CIRCUIT_OPEN: GrpcStatus.UNAVAILABLE,
    Status.OVERLOADED: GrpcStatus.RESOURCE_EXHAUSTED,
    Status.UNAUTHORIZED: GrpcStatus.PERMISSION_DENIED,
    Status.UNAVAILABLE: GrpcStatus.UNAVAILABLE,
    Status.INTERNAL: GrpcStatus.INTERNAL,
}

# Codes that count against the provider, as Envoy classifies them (its
# grpcToHttpStatus gives these a 5xx): outlier detection, breakers, retries.
_SERVER_FAULTS = frozenset(
    {
        GrpcStatus.UNKNOWN,
        GrpcStatus.UNIMPLEMENTED,
        GrpcStatus.INTERNAL,
        GrpcStatus.UNAVAILABLE,
        GrpcStatus.DATA_LOSS,
    }
)


def status_of(code: int) -> Status:
    """The neutral outcome of a call a provider answered with `code`."""
    if code == GrpcStatus.OK:
        return Status.OK
    if code == GrpcStatus.DEADLINE_EXCEEDED:
        return Status.TIMEOUT
    if code in _SERVER_FAULTS:
        return Status.APP_ERROR
    return Status.OK if 0 < code <= 16 else Status.APP_ERROR  # a client error, or garbage


def code_of(status: Status, code: int = 0) -> int:
    """The gRPC code for a mesh-made result; a non-zero `code` set by a rule wins."""
    if code:
        return code
    return int(STATUS_TO_GRPC.get(status, GrpcStatus.INTERNAL))


# RFC 9113 §7 error codes -> gRPC codes (PROTOCOL-HTTP2.md, "Errors").
_RESET_TO_GRPC = {
    0x7: GrpcStatus.UNAVAILABLE,  # REFUSED_STREAM: not processed, safe to retry
    0x8: GrpcStatus.CANCELLED,  # CANCEL
    0xB: GrpcStatus.RESOURCE_EXHAUSTED,  # ENHANCE_YOUR_CALM
    0xC: GrpcStatus.PERMISSION_DENIED,  # INADEQUATE_SECURITY
}


def code_of_reset(error_code: int) -> GrpcStatus:
    """The status a client reports for a stream reset with `error_code`."""
    return _RESET_TO_GRPC.get(error_code, GrpcStatus.INTERNAL)


@attrs.frozen(slots=True)
class MethodPath:
    """`/package.Service/Method`, split."""

    service: str
    method: str

    @classmethod
    def parse(cls, path: str) -> MethodPath | None:
        if not path.startswith("/"):
            return None
        service, sep, method = path[1:].partition("/")
        if not sep or not service or not method or "/" in method:
            return None
        return cls(service, method)
