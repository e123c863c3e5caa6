"""Bolt frames <-> the neutral model, shared by the SDK and the sidecar's Bolt listeners.

A proxy reads only a request's fixed header and header map, and forwards its body
untouched (so Hessian 3, Hessian 4 and protobuf peers all pass through):

- service: the `service` header (SOFARPC and sofa-rpc-node write it; Java also writes
  `sofa_head_target_service`), `interface:version[:uniqueId]`;
- method: `sofa_head_method_name` (Java writes it; sofa-rpc-node does not);
- caller: `x-sofamesh-caller`, which a mesh hop sets, else SOFATracer's
  `rpc_trace_context.sofaCallerApp`;
- deadline: the frame's timeout field (relative ms), rewritten at each hop with the
  time left (Bolt servers drop work whose timeout passed, sofa-bolt `RpcRequestProcessor`).

The `SofaRequest` at the head of a Hessian body is read too (never the arguments): it
fills in what a peer left out of the header map (sofa-rpc-node writes no method), and it
is what the provider will run. So a frame whose header map and body name different
services or methods is refused (`NameMismatch`): rules judge the header, the provider
runs the body, and the two must be one call. The refusal is a CODEC_EXCEPTION response
on the same connection, which stays open for the caller's other requests. The head is
read within small bounds (`sofarpc.peek_request`: a 16 KiB prefix, 64 class definitions),
so no body costs the event loop more than a few ms; a Hessian 2 body whose head breaks
them is refused the same way (`UncheckableBody`), since forwarding it would let a padded
body name a call the rules never judged.

Mesh-made failures become a response whose status a SOFARPC client acts on (TIMEOUT,
SERVER_THREADPOOL_BUSY, CODEC_EXCEPTION, SERVER_EXCEPTION), whose body is an
`RpcServerException` with a readable message, and whose header map carries
`x-sofamesh-error: <status>` so the next mesh hop recovers the neutral status exactly
(as `x-sofamesh-error` does for HTTP). A caller whose request body is in the older
Hessian draft dialect (sofa-bolt-node's default) gets the error body in that dialect.
The tables are in docs/protocols/bolt.md.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from sofamesh.codecs.bolt import (
    BOLT_V1,
    SOFA_REQUEST_CLASS,
    Codec,
    HeaderItems,
    RequestFrame,
    ResponseFrame,
    ResponseStatus,
    encode_header_map,
    encode_v1_reply,
    parse_header_map,
    reply,
)
from sofamesh.codecs.bolt.frames import FrameHeader
from sofamesh.codecs.bolt.headers import HeaderPicker
from sofamesh.codecs.bolt.names import peek_names
from sofamesh.codecs.bolt.sofarpc import (
    HeadUnreadable,
    encode_response,
    legacy_server_exception,
    peek_request,
    server_exception,
)
from sofamesh.model import CALLER_HEADER, Headers, Invocation, Result, Status
from sofamesh.tracing.propagation import expand_mark

log = logging.getLogger("sofamesh.bolt")

SERVICE_KEY = "service"
TARGET_SERVICE_KEY = "sofa_head_target_service"
METHOD_KEY = "sofa_head_method_name"
TARGET_APP_KEY = "sofa_head_target_app"
TRACE_CALLER_KEY = "rpc_trace_context.sofacallerapp"  # lowercased, as Headers keeps names
ERROR_HEADER = "x-sofamesh-error"
MESH_PREFIX = "x-sofamesh-"

# What a SOFARPC client does with each: TIMEOUT -> InvokeTimeoutException, BUSY ->
# InvokeServerBusyException (both retried by SOFARPC's FailoverCluster), CODEC ->
# CodecException, SERVER_EXCEPTION -> the body's message as the cause.
STATUS_TO_BOLT: dict[Status, int] = {
    Status.APP_ERROR: ResponseStatus.SERVER_EXCEPTION,
    Status.NO_ENDPOINT: ResponseStatus.SERVER_EXCEPTION,
    Status.CONNECT_FAILED: ResponseStatus.SERVER_EXCEPTION,
    Status.UPSTREAM_RESET: ResponseStatus.SERVER_EXCEPTION,
    Status.TIMEOUT: ResponseStatus.TIMEOUT,
    Status.BAD_REQUEST: ResponseStatus.CODEC_EXCEPTION,
    Status.RATE_LIMITED: ResponseStatus.SERVER_THREADPOOL_BUSY,
    Status.CIRCUIT_OPEN: ResponseStatus.SERVER_THREADPOOL_BUSY,
    Status.OVERLOADED: ResponseStatus.SERVER_THREADPOOL_BUSY,
    Status.UNAUTHORIZED: ResponseStatus.SERVER_EXCEPTION,
    Status.UNAVAILABLE: ResponseStatus.SERVER_THREADPOOL_BUSY,
    Status.INTERNAL: ResponseStatus.SERVER_EXCEPTION,
}

# A peer's status when no mesh hop named the neutral one.
BOLT_TO_STATUS: dict[int, Status] = {
    ResponseStatus.SUCCESS: Status.OK,
    ResponseStatus.TIMEOUT: Status.TIMEOUT,
    ResponseStatus.SERVER_THREADPOOL_BUSY: Status.OVERLOADED,
    ResponseStatus.CONNECTION_CLOSED: Status.UPSTREAM_RESET,
    ResponseStatus.CODEC_EXCEPTION: Status.BAD_REQUEST,
    ResponseStatus.SERVER_DESERIAL_EXCEPTION: Status.BAD_REQUEST,
}

# A mesh hop that says the app behind it was never reached: as safe to retry elsewhere
# as a refused connection (the same rule as HTTP's).
_NOT_REACHED = frozenset({Status.CONNECT_FAILED, Status.NO_ENDPOINT, Status.UNAVAILABLE})
_BY_VALUE = {s.value: s for s in Status}
_new = tuple.__new__  # builds a frame without NamedTuple's Python-level __new__ (hot path)
_new_object = object.__new__
_BOLT_CODES = frozenset(s.value for s in ResponseStatus)
# An enum member read per request, bound once: `EnumType` defines `__getattr__`, so on
# 3.11 `Codec.HESSIAN2` takes the slow attribute hook (about 1,100 instructions), where a
# module global costs about 40.
_HESSIAN2 = Codec.HESSIAN2


# What a request's header map must say for the mesh to route it, by slot of the answer.
_PICKER = HeaderPicker(
    {
        SERVICE_KEY.encode(): 0,
        TARGET_SERVICE_KEY.encode(): 1,
        METHOD_KEY.encode(): 2,
        TRACE_CALLER_KEY.encode(): 3,
    },
    MESH_PREFIX.encode(),
)
_ITEMS: Any = Headers.__dict__["_items"]  # the slot `_RequestHeaders` fills on first use


class _RequestHeaders(Headers):
    """A request's header map, parsed into `Headers` the first time anything reads it.

    Routing needs about five of a request's headers (`_PICKER` finds them); the rest
    (trace ids and the like) matter only to rules that match headers, so a call that meets
    none is never parsed whole."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        self._raw: bytes | None = raw  # None once parsed

    @property
    def _items(self) -> list[tuple[str, str]]:
        raw = self._raw
        if raw is not None:  # first use
            parsed = parse_header_map(raw)
            _ITEMS.__set__(self, [(k.lower(), v) for k, v in parsed if v is not None])
            self._raw = None
        items: list[tuple[str, str]] = _ITEMS.__get__(self)
        return items

    @_items.setter
    def _items(self, items: list[tuple[str, str]]) -> None:
        _ITEMS.__set__(self, items)
        self._raw = None

    @property
    def parsed(self) -> bool:
        return self._raw is None


class NameMismatch(ValueError):
    """The header map and the `SofaRequest` body name different services or methods."""


class UncheckableBody(NameMismatch):
    """A Hessian 2 body whose head the proxy cannot read within its bounds, so it cannot
    be shown to name the header's call: refused like a mismatch, never forwarded."""


def invocation_of(frame: RequestFrame) -> Invocation:
    """`request_to_invocation(frame, frame.headers())`, reading only the headers routing
    needs; the rest are parsed if a filter reads `inv.headers`. Raises `NameMismatch`, and
    `HeaderMapError` for a malformed map (a listener's decoder leaves that check to it)."""
    picked = _PICKER.pick(frame.header)
    if picked is None or picked[1]:  # mesh headers to take out (or a malformed map)
        return request_to_invocation(frame, frame.headers())
    (service, target, method, trace_caller), _ = picked
    service, method = _names(frame, service or target or "", method or "")
    headers = _new_object(_RequestHeaders)  # `_RequestHeaders(raw)` without a Python frame
    headers._raw = frame.header
    # Positional (protocol, service, method, headers, caller, deadline, peer, payload):
    # a class called with keywords builds a dict for them.
    return Invocation("bolt", service, method, headers, trace_caller or "", None, "", frame)


def request_to_invocation(frame: RequestFrame, items: HeaderItems) -> Invocation:
    """The invocation for a request whose header map parsed to `items`.

    Mesh headers (`x-sofamesh-*`) move from the frame into `inv.headers`; the payload is
    the frame without them, so each hop sets its own. Raises `NameMismatch`.
    """
    pairs: list[tuple[str, str]] = []
    mesh = False
    for k, v in items:
        if v is not None:
            k = k.lower()
            pairs.append((k, v))
            mesh = mesh or k.startswith(MESH_PREFIX)
    headers = Headers.from_lower(pairs)
    get = headers.get
    service, method = _names(
        frame, get(SERVICE_KEY) or get(TARGET_SERVICE_KEY) or "", get(METHOD_KEY) or ""
    )
    if mesh:
        kept = [(k, v) for k, v in items if not k.lower().startswith(MESH_PREFIX)]
        frame = frame._replace(header=encode_header_map(kept, keep_nulls=True))
    return Invocation(
        protocol="bolt",
        service=service,
        method=method,
        headers=headers,
        caller=get(CALLER_HEADER) or get(TRACE_CALLER_KEY) or "",
        payload=frame,
    )


def _names(frame: RequestFrame, service: str, method: str) -> tuple[str, str]:
    """(service, method): the header's, checked against the body's and completed by it."""
    # `_is_sofa_hessian(frame)`, inline: a Python call less per request
    if frame.codec != _HESSIAN2 or frame.class_name != SOFA_REQUEST_CLASS:
        return service, method  # protobuf or another class: the header is all there is
    names = peek_names(frame.body)  # the head alone, in the forms peers write (a few us)
    if names is None:
        try:  # any other form: the decoder, on a bounded prefix under small limits
            peeked = peek_request(frame.body)
        except HeadUnreadable as exc:
            raise UncheckableBody(str(exc)) from None
        if peeked is None:
            return service, method  # the older Hessian dialect: forwarded as it is
        names = peeked.methodName, peeked.targetServiceUniqueName
    body_method, body_service = names[0] or "", names[1] or ""
    if service and body_service and service != body_service:
        raise NameMismatch(f"header names service {service}, the body {body_service}")
    if method and body_method and method != body_method:
        raise NameMismatch(f"header names method {method}, the body {body_method}")
    return service or body_service, method or body_method


def refuse(frame: RequestFrame, error: NameMismatch, peer: object) -> ResponseFrame | None:
    """The answer to a frame whose header and body disagree: logged, CODEC_EXCEPTION."""
    log.warning("bolt request %d from %s refused: %s", frame.request_id, peer, error)
    if frame.oneway:
        return None
    return error_response(frame, Status.BAD_REQUEST, f"request refused: {error}")


def _is_sofa_hessian(frame: RequestFrame) -> bool:
    return frame.codec == Codec.HESSIAN2 and frame.class_name == SOFA_REQUEST_CLASS


def invocation_to_frame(inv: Invocation, now: float) -> RequestFrame:
    """The request to send to the next hop: the caller's frame with this hop's mesh
    headers appended and the time left in the timeout field."""
    return request_with(*outbound_request(inv, now))


def request_with(frame: RequestFrame, header: bytes, timeout_ms: int) -> RequestFrame:
    """`frame` with `header` and `timeout_ms` (`_replace` without its Python-level work)."""
    rid, body, cls, _, _, oneway, cmd, codec, version, ver1, switch, ver2 = frame
    return _new(RequestFrame, (
        rid, body, cls, header, timeout_ms, oneway, cmd, codec, version, ver1, switch, ver2,
    ))  # fmt: skip


def outbound_request(inv: Invocation, now: float) -> tuple[RequestFrame, bytes, int]:
    """`invocation_to_frame`'s parts: the caller's frame, the header map and the timeout
    to send it with (`encode_request_as` writes them in one pass, without a frame)."""
    frame: RequestFrame = inv.payload
    header = frame.header
    headers = inv.headers
    # `headers.parsed`, read without the property's call: else the frame's, untouched
    if type(headers) is not _RequestHeaders or headers._raw is None:
        extra = [
            (k, v)
            for k, v in headers.items()
            if k.startswith(MESH_PREFIX) and k != CALLER_HEADER and k != ERROR_HEADER
        ]
        if extra:
            header += encode_header_map(expand_mark(extra, headers))
    if inv.caller:
        header += _caller_entry(inv.caller)
    if inv.deadline is None:
        return frame, header, frame.timeout_ms
    timeout = int((inv.deadline - now) * 1000)
    return frame, header, timeout if timeout > 0 else 1  # 1 ms: Bolt reads 0 as "none"


@functools.lru_cache(maxsize=256)
def _caller_entry(caller: str) -> bytes:
    """`x-sofamesh-caller: <app>` as header-map bytes (a sidecar has one app: cached)."""
    return encode_header_map(((CALLER_HEADER, caller),))


def response_to_result(resp: ResponseFrame) -> Result:
    """A peer's response: SUCCESS is OK; a mesh hop's `x-sofamesh-error` names the status."""
    code = resp.status
    if code == ResponseStatus.SUCCESS:
        return Result(Status.OK, code, None, resp)  # positional: no keyword dict
    status = BOLT_TO_STATUS.get(code, Status.APP_ERROR)
    if resp.header:
        for key, value in resp.headers():
            if key == ERROR_HEADER and value in _BY_VALUE:
                named = _BY_VALUE[value]
                status = Status.CONNECT_FAILED if named in _NOT_REACHED else named
    return Result(status, code, payload=resp)


def result_to_response(result: Result, to: RequestFrame | FrameHeader) -> ResponseFrame:
    """What the caller receives: the provider's response under the caller's request id
    (and its protocol version, so a v2 request with CRC gets a v2 reply with CRC), or a
    mesh-made one."""
    payload = result.payload
    if type(payload) is ResponseFrame:
        _, status, body, cls, header, cmd, codec, _, _, _, ver2 = payload
        return _new(ResponseFrame, (
            to.request_id, status, body, cls, header, cmd, codec, to.version, to.ver1,
            to.switch, ver2,
        ))  # fmt: skip
    if isinstance(payload, bytes | str) and result.status is Status.OK:
        # A direct response or fallback from governance: its body is the call's value.
        text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        status = _bolt_code(result.code) or ResponseStatus.SUCCESS
        return reply(to, status=status, body=encode_response(text))
    if isinstance(payload, bytes) and payload:
        detail = payload.decode("utf-8", "replace")
    else:
        detail = result.detail or result.status.value
    return error_response(to, result.status, detail, code=_bolt_code(result.code))


def reply_of(result: Result, to: RequestFrame) -> ResponseFrame | bytes:
    """`result_to_response(result, to)`, already encoded when it is the usual proxied
    reply (a provider's response to a v1 caller: `encode_v1_reply`); the server encodes
    a frame, and sends bytes as they are."""
    payload = result.payload
    if type(payload) is ResponseFrame and to.version == BOLT_V1:
        return encode_v1_reply(payload, to.request_id)
    return result_to_response(result, to)


def _bolt_code(code: int) -> int | None:
    """A rule's `code` when it is a Bolt status (rules written for HTTP say 200 or 503)."""
    return code if code and code in _BOLT_CODES else None


def error_response(
    to: RequestFrame | FrameHeader, status: Status, detail: str, *, code: int | None = None
) -> ResponseFrame:
    """A mesh-made failure for `to`: the status a SOFARPC client acts on, a readable
    `RpcServerException` body, and `x-sofamesh-error` for the next mesh hop."""
    bolt_status = code if code is not None else STATUS_TO_BOLT.get(status, ResponseStatus.ERROR)
    message = f"sofamesh: {detail}"
    legacy = isinstance(to, RequestFrame) and _is_sofa_hessian(to) and to.body[:1] == b"O"
    frame = reply(
        to,
        status=bolt_status,
        body=legacy_server_exception(message) if legacy else server_exception(message),
        headers=((ERROR_HEADER, status.value),),
    )
    # The body is Hessian whatever the request's codec was (clients read the reply's byte).
    return frame._replace(codec=Codec.HESSIAN2)
