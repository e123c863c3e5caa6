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
maps to and from the gRPC codes here, nowhere else.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Iterable
from urllib.parse import quote, unquote

import attrs

from sofamesh.codecs.http1.paths import PathError, normalize_target
from sofamesh.model import CALLER_HEADER, SERVICE_HEADER, Status

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


# -- headers <-> the neutral call -------------------------------------------------------

RawHeaders = list[tuple[bytes, bytes]]
SERVICE_B = SERVICE_HEADER.encode()
CALLER_B = CALLER_HEADER.encode()
ERROR_B = b"x-sofamesh-error"
# Fields a hop does not forward: HTTP/2 forbids the connection-specific ones
# (RFC 9113 §8.2.2); the deadline and the mesh's own fields are rewritten per hop.
_NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"host",
        b"grpc-timeout",
        SERVICE_B,
        CALLER_B,
        b"x-sofamesh-timeout-ms",
    }
)


@attrs.frozen(slots=True)
class RequestHead:
    """What the mesh reads from a request's header block.

    `refused` is why a gRPC request must be answered INVALID_ARGUMENT without
    running the chain ("" when it may run): its `:path` is not a method path
    once normalised, or `x-sofamesh-service` contradicts it.
    """

    path: str
    service: str
    authority: str
    is_grpc: bool  # content-type application/grpc[+codec]
    timeout: float | None
    caller: str
    metadata: tuple[tuple[str, str], ...]  # the regular fields, lowercase names
    refused: str = ""


# Heads of recent requests by their fields: a client repeats its header block call after
# call, and splitting it costs more than a look-up. Bounded: blocks of up to
# _HEAD_OCTETS octets, _MAX_HEADS of them, forgotten all at once when full.
_MAX_HEADS = 256
_HEAD_OCTETS = 2048
_heads: dict[tuple[tuple[bytes, bytes], ...], RequestHead] = {}


def read_request(raw: RawHeaders) -> RequestHead:
    """Split a request header block.

    A gRPC request's service is the one its `:path` names, as the provider
    dispatches on `:path`: `x-sofamesh-service` may repeat it, never
    contradict it. Other HTTP/2 requests (plain h2c) take the service from
    x-sofamesh-service, else the path's, else :authority.
    """
    key = tuple(raw)
    head = _heads.get(key)
    if head is None:
        head = _read_request(raw)
        if sum(len(k) + len(v) for k, v in raw) <= _HEAD_OCTETS:
            if len(_heads) >= _MAX_HEADS:
                _heads.clear()
            _heads[key] = head
    return head


def _read_request(raw: RawHeaders) -> RequestHead:
    path = authority = ctype = explicit = caller = ""
    timeout: float | None = None
    metadata: list[tuple[str, str]] = []
    for k, v in raw:
        if k[:1] == b":":
            if k == b":path":
                path = v.decode("latin-1")
            elif k == b":authority":
                authority = v.decode("latin-1")
            continue
        value = v.decode("latin-1")
        if k == b"content-type":
            ctype = value
        elif k == b"grpc-timeout":
            timeout = parse_timeout(value)
        elif k == SERVICE_B:
            explicit = value
        elif k == CALLER_B:
            caller = value
        metadata.append((k.decode("latin-1"), value))
    is_grpc = ctype == CONTENT_TYPE or ctype.startswith(CONTENT_TYPE + "+")
    if is_grpc:
        return _grpc_head(path, explicit, authority, timeout, caller, tuple(metadata))
    service = explicit or _service_of_path(path) or _host_of(authority)
    return RequestHead(path, service, authority, is_grpc, timeout, caller, tuple(metadata))


def _grpc_head(
    path: str,
    explicit: str,
    authority: str,
    timeout: float | None,
    caller: str,
    metadata: tuple[tuple[str, str], ...],
) -> RequestHead:
    refused = ""
    try:  # escaped slashes have no place in a method path: refused (codecs/http1/paths.py)
        path = normalize_target(path)
    except PathError as exc:
        refused = str(exc)
    mp = MethodPath.parse(path) if not refused else None
    service = mp.service if mp is not None else ""
    if not refused and mp is None:
        refused = f"{path!r} is not a gRPC method path (/package.Service/Method)"
    elif explicit and explicit != service:
        refused = f"{SERVICE_HEADER} {explicit!r} contradicts :path {path!r}"
    return RequestHead(path, service, authority, True, timeout, caller, metadata, refused)


def _service_of_path(path: str) -> str:
    mp = MethodPath.parse(path)
    return mp.service if mp is not None else ""


def _host_of(authority: str) -> str:
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.rsplit(":", 1)[0]


def request_headers(
    path: str,
    authority: str,
    metadata: Iterable[tuple[str, str]],
    *,
    service: str,
    caller: str,
    timeout: float | None,
) -> RawHeaders:
    """The header block for the next hop: the caller's metadata, this hop's names and deadline.

    The deadline comes last: it changes with every call, and HPACK reuses the
    coded block of the fields before it (`codecs.h2.compression`)."""
    key = (path, authority, tuple(metadata), service, caller)
    out = _next_heads.get(key)
    if out is None:
        out = _next_head(path, authority, key[2], service, caller)
        if sum(len(k) + len(v) for k, v in out) <= _HEAD_OCTETS:  # remembered as heads are
            if len(_next_heads) >= _MAX_HEADS:
                _next_heads.clear()
            _next_heads[key] = out
    if timeout is None:
        return list(out)
    return [*out, (b"grpc-timeout", format_timeout(timeout).encode())]


_next_heads: dict[tuple[object, ...], RawHeaders] = {}


def _next_head(
    path: str, authority: str, metadata: Iterable[tuple[str, str]], service: str, caller: str
) -> RawHeaders:
    out: RawHeaders = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode("latin-1")),
        (b":authority", (authority or service).encode("latin-1")),
        (b"te", b"trailers"),
    ]
    has_type = False
    for k, v in metadata:
        kb = k.encode("latin-1")
        if kb in _NOT_FORWARDED:
            continue
        has_type = has_type or kb == b"content-type"
        out.append((kb, v.encode("latin-1")))
    if not has_type:
        out.append((b"content-type", CONTENT_TYPE.encode()))
    out.append((SERVICE_B, service.encode("latin-1")))
    if caller:
        out.append((CALLER_B, caller.encode("latin-1")))
    return out


def forwardable(raw: RawHeaders) -> RawHeaders:
    """A response header or trailer block minus the connection-specific fields."""
    return [(k, v) for k, v in raw if k not in _NOT_FORWARDED]


def status_trailers(code: int, message: str, mesh_status: Status | None = None) -> RawHeaders:
    """grpc-status and grpc-message; `mesh_status` marks a failure the mesh itself produced."""
    out: RawHeaders = [(b"grpc-status", str(code).encode())]
    if message:
        out.append((b"grpc-message", encode_grpc_message(message).encode("ascii")))
    if mesh_status is not None:
        out.append((ERROR_B, mesh_status.value.encode()))
    return out


TRAILERS_ONLY_HEAD: RawHeaders = [(b":status", b"200"), (b"content-type", CONTENT_TYPE.encode())]

# gRPC's doc/http-grpc-status-mapping.md: a non-200 response from an HTTP hop.
_HTTP_TO_GRPC = {
    400: GrpcStatus.INTERNAL,
    401: GrpcStatus.UNAUTHENTICATED,
    403: GrpcStatus.PERMISSION_DENIED,
    404: GrpcStatus.UNIMPLEMENTED,
    429: GrpcStatus.UNAVAILABLE,
    502: GrpcStatus.UNAVAILABLE,
    503: GrpcStatus.UNAVAILABLE,
    504: GrpcStatus.UNAVAILABLE,
}
# A mesh hop that says the provider was never reached: safe to retry elsewhere.
_NOT_REACHED = {
    s.value.encode() for s in (Status.CONNECT_FAILED, Status.NO_ENDPOINT, Status.UNAVAILABLE)
}


@attrs.frozen(slots=True)
class Outcome:
    status: Status
    code: int
    message: str


_outcomes: dict[tuple[tuple[tuple[bytes, bytes], ...], ...], Outcome] = {}


def outcome_of(headers: RawHeaders, trailers: RawHeaders) -> Outcome:
    """The outcome of a response: grpc-status from the trailers (or a Trailers-Only head).

    Remembered for the responses a provider repeats, as request heads are."""
    key = (tuple(headers), tuple(trailers))
    out = _outcomes.get(key)
    if out is None:
        out = _outcome_of(headers, trailers)
        if sum(len(k) + len(v) for k, v in (*headers, *trailers)) <= _HEAD_OCTETS:
            if len(_outcomes) >= _MAX_HEADS:
                _outcomes.clear()
            _outcomes[key] = out
    return out


def _outcome_of(headers: RawHeaders, trailers: RawHeaders) -> Outcome:
    http_status = 200
    code: int | None = None
    message = ""
    not_reached = False
    for k, v in (*headers, *trailers):
        if k == b"grpc-status":
            code = int(v) if v.isdigit() else int(GrpcStatus.UNKNOWN)
        elif k == b"grpc-message":
            message = decode_grpc_message(v.decode("latin-1"))
        elif k == b":status":
            http_status = int(v) if v.isdigit() else 0
        elif k == ERROR_B:
            not_reached = v in _NOT_REACHED
    if http_status != 200:
        code = int(_HTTP_TO_GRPC.get(http_status, GrpcStatus.UNKNOWN))
        message = message or f"HTTP status {http_status} from upstream"
    elif code is None:
        code = int(GrpcStatus.UNKNOWN)
        message = message or "the response ended without grpc-status"
    status = Status.CONNECT_FAILED if not_reached and code else status_of(code)
    return Outcome(status, code, message)
