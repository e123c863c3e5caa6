"""Dubbo frames <-> the neutral model, shared by the SDK and the sidecar's Dubbo listeners.

A proxy reads a request's head (`codecs.dubbo.names`: path, version, method) and its
attachments, never its arguments, and forwards the argument bytes untouched:

- service: Dubbo's service key, `group/path:version` (empty parts left out), so rules
  and registries name a Dubbo service as Dubbo does;
- method: the Dubbo method name; headers: the attachments whose values are strings;
- caller: `x-sofamesh-caller`, which a mesh hop sets (an outbound listener vouches for
  its own app and overwrites it), else Dubbo's `remote.application`;
- deadline: the `timeout` attachment (ms), which Dubbo consumers send.

Mesh attachments (`x-sofamesh-*`) are taken off at each hop and this hop's appended,
splicing them into the end of the caller's attachments map, so everything else reaches
the provider byte for byte. Only Hessian 2 requests can be routed; a request in another
serialization is refused with BAD_REQUEST, while responses of any serialization pass.

Mesh-made failures are responses whose status a Dubbo client acts on (the table in
docs/protocols/dubbo.md) and whose message starts `sofamesh(<status>):`, which the next
mesh hop reads back into the neutral status. A rule's refusal (rate limit, breaker,
authorization) is what Dubbo's own filters produce: an OK response carrying an
`org.apache.dubbo.rpc.RpcException`, so a Dubbo client throws it with its message.
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

from sofamesh.codecs import dubbo, hessian2
from sofamesh.codecs.dubbo import RequestFrame, ResponseFrame, Serialization
from sofamesh.codecs.dubbo import Status as DubboStatus
from sofamesh.model import CALLER_HEADER, Headers, Invocation, Result, Status
from sofamesh.tracing.propagation import expand_mark

MESH_PREFIX = "x-sofamesh-"
APPLICATION_KEY = "remote.application"
TIMEOUT_KEY = "timeout"
RPC_EXCEPTION = "org.apache.dubbo.rpc.RpcException"

STATUS_TO_DUBBO: dict[Status, int] = {
    Status.APP_ERROR: DubboStatus.SERVICE_ERROR,
    Status.NO_ENDPOINT: DubboStatus.SERVICE_NOT_FOUND,
    Status.CONNECT_FAILED: DubboStatus.SERVICE_NOT_FOUND,
    Status.UPSTREAM_RESET: DubboStatus.SERVER_ERROR,
    Status.TIMEOUT: DubboStatus.SERVER_TIMEOUT,
    Status.BAD_REQUEST: DubboStatus.BAD_REQUEST,
    Status.OVERLOADED: DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR,
    Status.UNAVAILABLE: DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR,
    Status.INTERNAL: DubboStatus.SERVER_ERROR,
}
# Refusals by a rule: an RpcException in an OK response, as Dubbo's own filters answer.
RULE_REFUSALS = frozenset({Status.RATE_LIMITED, Status.CIRCUIT_OPEN, Status.UNAUTHORIZED})

DUBBO_TO_STATUS: dict[int, Status] = {
    DubboStatus.OK: Status.OK,
    DubboStatus.CLIENT_TIMEOUT: Status.TIMEOUT,
    DubboStatus.SERVER_TIMEOUT: Status.TIMEOUT,
    DubboStatus.BAD_REQUEST: Status.BAD_REQUEST,
    DubboStatus.SERVICE_NOT_FOUND: Status.NO_ENDPOINT,
    DubboStatus.CHANNEL_INACTIVE: Status.UPSTREAM_RESET,
    DubboStatus.SERVER_THREADPOOL_EXHAUSTED_ERROR: Status.OVERLOADED,
}
_NOT_REACHED = frozenset({Status.CONNECT_FAILED, Status.NO_ENDPOINT, Status.UNAVAILABLE})
_BY_VALUE = {s.value: s for s in Status}
_MARK = re.compile(rb"sofamesh\(([a-z_]+)\)")
_EXCEPTION_FLAGS = (b"\x90", b"\x93")  # EXCEPTION, EXCEPTION_WITH_ATTACHMENTS as Hessian ints


class BadCall(ValueError):
    """A request the mesh cannot route: its message is the caller's answer."""


class DubboCall(NamedTuple):
    """A request as a proxy holds it: the frame, and where its attachments map starts."""

    frame: RequestFrame
    attachments_at: int  # offset in frame.body; len(body) when it has none


def service_key(path: str, version: str = "", group: str = "") -> str:
    """Dubbo's service key: `group/path:version`."""
    key = f"{group}/{path}" if group else path
    return f"{key}:{version}" if version else key


def request_to_invocation(frame: RequestFrame) -> Invocation:
    """The invocation of a request; raises `BadCall`."""
    if frame.serialization != Serialization.HESSIAN2:
        raise BadCall(f"serialization {frame.serialization} cannot be routed, only Hessian 2")
    body = frame.body
    head = dubbo.peek_head(body)
    at = dubbo.attachments_at(body, head) if head is not None else None
    tail = _TAILS.get(body[at:]) if at is not None and len(body) - at <= _MAX_TAIL else None
    if tail is None or head is None or at is None:
        head, tail, at = _read_request(body, head)
    if tail.mesh:
        frame, at = _without_mesh_keys(frame, tail.attachments, at)
    return Invocation(
        protocol="dubbo",
        service=service_key(head.path, head.version, tail.group),
        method=head.method,
        headers=Headers.from_lower(list(tail.pairs)),
        caller=tail.caller,
        payload=DubboCall(frame, at),
    )


class _Tail(NamedTuple):
    """What the mesh reads off a request's attachments (remembered by their bytes)."""

    attachments: dict[str, Any]  # never changed once made
    pairs: tuple[tuple[str, str], ...]  # the headers: string values, lowercase names
    mesh: bool  # it carries mesh attachments, which this hop replaces
    group: str
    caller: str


# A client sends the same attachments with most calls: read once, then one lookup.
_TAILS: dict[bytes, _Tail] = {}
_MAX_TAILS = 1024
_MAX_TAIL = 1024  # bytes; longer attachments are read every time


def _read_request(body: bytes, head: dubbo.Head | None) -> tuple[dubbo.Head, _Tail, int]:
    try:
        if head is None:  # an unusual encoding of the head: the full decoder reads it
            full = dubbo.decode_request(body)
            head = dubbo.Head(full.dubbo_version, full.path, full.version, full.method,
                              full.descriptor, _head_end(body))  # fmt: skip
        attachments, at = dubbo.attachments_of(body, head)
    except (dubbo.BodyError, hessian2.Hessian2DecodeError, ValueError) as e:
        raise BadCall(f"not a Dubbo request body: {e}") from None
    pairs = tuple((str(k).lower(), v) for k, v in attachments.items() if isinstance(v, str))
    headers = Headers.from_lower(list(pairs))
    tail = _Tail(
        attachments, pairs, any(str(k).lower().startswith(MESH_PREFIX) for k in attachments),
        headers.get("group") or "",
        headers.get(CALLER_HEADER) or headers.get(APPLICATION_KEY) or "",
    )  # fmt: skip
    if len(body) - at <= _MAX_TAIL:
        if len(_TAILS) >= _MAX_TAILS:
            _TAILS.clear()
        _TAILS[body[at:]] = tail
    return head, tail, at


def _head_end(body: bytes) -> int:
    decoder = hessian2.Decoder(body)
    for _ in range(5):
        decoder.read()
    return decoder.offset


def _without_mesh_keys(
    frame: RequestFrame, attachments: dict[str, Any], at: int
) -> tuple[RequestFrame, int]:
    kept = {k: v for k, v in attachments.items() if not k.lower().startswith(MESH_PREFIX)}
    body = frame.body[:at] + hessian2.dumps(kept)
    return frame._replace(body=body), at


def timeout_ms(inv: Invocation) -> int:
    """The caller's `timeout` attachment in ms, 0 if none or unreadable."""
    raw = inv.headers.get(TIMEOUT_KEY) or ""
    return int(raw) if raw.isdigit() else 0


def invocation_to_frame(inv: Invocation) -> RequestFrame:
    """The request for the next hop: the caller's, with this hop's mesh attachments."""
    call: DubboCall = inv.payload
    extra = expand_mark(
        [
            (k, v)
            for k, v in inv.headers.items()
            if k.startswith(MESH_PREFIX) and k != CALLER_HEADER
        ],
        inv.headers,
    )
    if inv.caller:
        extra.append((CALLER_HEADER, inv.caller))
    frame = call.frame
    if not extra:
        return frame
    body = append_attachments(frame.body, call.attachments_at, extra)
    return RequestFrame(frame.request_id, body, frame.serialization, frame.two_way, frame.event)


def append_attachments(body: bytes, at: int, extra: list[tuple[str, str]]) -> bytes:
    """`body` with `extra` entries added at the end of its attachments map (or a new map)."""
    entries = b"".join(_entry(k, v) for k, v in extra)
    if at < len(body) and body[-1:] == b"Z":  # 'H' ... 'Z' or 'M' type ... 'Z'
        return body[:-1] + entries + b"Z"
    return body[:at] + b"H" + entries + b"Z"


@functools.lru_cache(maxsize=256)
def _entry(key: str, value: str) -> bytes:
    """One map entry's bytes (a sidecar has one app and a few mesh keys: cached)."""
    return hessian2.dumps(key) + hessian2.dumps(value)


def response_to_result(resp: ResponseFrame) -> Result:
    """A peer's response: OK is OK (an exception value is the app's answer), unless a mesh
    hop marked it with the neutral status it stands for."""
    code = resp.status
    status = DUBBO_TO_STATUS.get(code, Status.APP_ERROR)
    if code == DubboStatus.OK and resp.body[:1] not in _EXCEPTION_FLAGS:
        return Result(Status.OK, code, payload=resp)
    mark = _MARK.search(resp.body, 0, 64)
    if mark is not None and (named := _BY_VALUE.get(mark.group(1).decode())) is not None:
        status = Status.CONNECT_FAILED if named in _NOT_REACHED else named
    return Result(status, code, payload=resp)


def result_to_response(result: Result, to: RequestFrame) -> ResponseFrame:
    """What the caller receives: the provider's response under the caller's id, a
    mesh-made answer, or a mesh failure."""
    payload = result.payload
    if type(payload) is ResponseFrame:  # the constructor: cheaper than _replace
        return ResponseFrame(
            to.request_id, payload.status, payload.body, payload.serialization, payload.event
        )
    if isinstance(payload, bytes | str) and result.status is Status.OK:
        text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        code = result.code if result.code in _DUBBO_CODES else DubboStatus.OK
        body = dubbo.encode_response(text) if code == DubboStatus.OK else dubbo.encode_error(text)
        return dubbo.reply(to, code, body)
    if isinstance(payload, bytes) and payload:
        detail = payload.decode("utf-8", "replace")
    else:
        detail = result.detail or result.status.value
    rule_code = result.code if result.code in _DUBBO_CODES else None
    return error_response(to, result.status, detail, code=rule_code)


_DUBBO_CODES = frozenset(int(s) for s in DubboStatus)


def error_response(
    to: RequestFrame | dubbo.FrameHeader, status: Status, detail: str, *, code: int | None = None
) -> ResponseFrame:
    """A mesh-made failure: the status (or RpcException) a Dubbo client shows, with the
    neutral status marked in the message for the next mesh hop."""
    message = f"sofamesh({status.value}): {detail}"
    if code is None and status in RULE_REFUSALS:
        exc = hessian2.JavaException(
            RPC_EXCEPTION, {"detailMessage": message, "code": _RPC_CODES[status]}
        )
        return dubbo.reply(to, DubboStatus.OK, dubbo.encode_response(exc, exception=True))
    dubbo_code = code or STATUS_TO_DUBBO.get(status, DubboStatus.SERVER_ERROR)
    return dubbo.reply(to, dubbo_code, dubbo.encode_error(message))


# RpcException.code: FORBIDDEN_EXCEPTION = 4, LIMIT_EXCEEDED_EXCEPTION = 7.
_RPC_CODES = {Status.RATE_LIMITED: 7, Status.CIRCUIT_OPEN: 7, Status.UNAUTHORIZED: 4}
