"""gRPC request and response heads <-> the neutral call (sans-IO).

What the mesh reads from a request's header block (`read_request`: the method
path, service, deadline, caller, metadata; remembered for a client that repeats
its block), the next hop's header block (`request_headers`), the fields a hop
does not forward, and a call's outcome from the response headers and trailers
(`outcome_of`, including a "Trailers-Only" answer and an HTTP status from a
proxy that never reached a gRPC server). Framing, `grpc-timeout` and the status
codes are in `codecs/grpc.py`.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from sofamesh.codecs.grpc import (
    CONTENT_TYPE,
    GrpcStatus,
    MethodPath,
    decode_grpc_message,
    encode_grpc_message,
    format_timeout,
    parse_timeout,
    status_of,
)
from sofamesh.codecs.http1.paths import PathError, normalize_target
from sofamesh.model import CALLER_HEADER, SERVICE_HEADER, Status

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
    fields: tuple[tuple[str, str], ...]  # the trailers as text, for `Result.headers`


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
    fields = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in trailers)
    return Outcome(status, code, message, fields)
