"""HTTP messages <-> the neutral model, shared by HTTP/1.1 and HTTP/2 (plain h2c requests).

Which service a request is for: the `x-sofamesh-service` header if present,
else the `Host` header without its port (so `http://com.example.Orders/x`
just works). The invocation's method is the request path without the query.

Mesh-made failures become HTTP responses with a plain-text body that names the
service and the reason, and an `x-sofamesh-error` header with the neutral
status, so a caller (or its on-call engineer) can tell a mesh 503 from an app 503.
"""

from __future__ import annotations

import functools
from collections.abc import Set as AbstractSet
from typing import Any

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.codecs.http1.messages import PROXY_DROP, HeaderList, ParsedFields, checked
from sofamesh.codecs.http1.relayed import RelayedResponse
from sofamesh.codecs.http1.relayed_request import FORWARD_DROP, RelayedRequest
from sofamesh.codecs.http1.writer import valid_value
from sofamesh.model import (
    CALLER_HEADER,
    SERVICE_HEADER,
    TIMEOUT_HEADER,
    Headers,
    Invocation,
    Result,
    Status,
)

ERROR_HEADER = "x-sofamesh-error"

# Envoy's choices where it has one (503 for no healthy upstream / connect failure,
# 504 for timeouts, 502 for resets), 429 for rate limits (Envoy's local rate limit answers 429 too).
STATUS_TO_HTTP = {
    Status.APP_ERROR: 500,
    Status.NO_ENDPOINT: 503,
    Status.CONNECT_FAILED: 503,
    Status.UPSTREAM_RESET: 502,
    Status.TIMEOUT: 504,
    Status.BAD_REQUEST: 400,
    Status.RATE_LIMITED: 429,
    Status.CIRCUIT_OPEN: 503,
    Status.OVERLOADED: 503,
    Status.UNAUTHORIZED: 403,
    Status.UNAVAILABLE: 503,
    Status.INTERNAL: 500,
}

# RFC 9110 §9.2.2: methods whose repetition has the same effect as one request.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


def service_of(headers: Headers) -> str:
    """The target service of a request, or '' if it names none."""
    return _service(headers.get(SERVICE_HEADER), headers.get("host", "") or "")


def _service(explicit: str | None, host: str) -> str:
    if explicit:
        return explicit
    if host.startswith("["):  # [v6]:port
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def to_headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    return Headers.from_lower([(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw])


def to_raw(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in headers.items()
        if k not in HOP_BY_HOP
    ]


_ITEMS: Any = Headers.__dict__["_items"]  # the slot `WireHeaders` fills on first use


class WireHeaders(Headers):
    """A request's fields as the codec read them, decoded into `Headers` on first use.

    The chains read a request's service, caller and deadline (picked from the fields
    when the invocation is made) and, unless a rule matches or sets headers, nothing
    else: such a request goes upstream with its fields as they came (`wire`), never
    decoded and encoded again, and a `RelayedRequest` never even parsed into a list.
    Anything that reads or changes them decodes them first.
    """

    __slots__ = ("request",)

    def __init__(self, request: HttpRequest) -> None:
        self.request: HttpRequest | None = request  # whose fields these are; None once decoded

    @property
    def wire(self) -> HeaderList | None:
        """The request's fields as the codec read them (parsed now if they were not), or
        None once decoded."""
        request = self.request
        return None if request is None else request.headers

    def get(self, name: str, default: str | None = None) -> str | None:
        request = self.request
        if request is None or ":" in name or not name.isascii():  # decoded, or no field name
            return Headers.get(self, name, default)
        value = request.header(name.encode("latin-1"))  # one field, the rest left as they are
        return default if value is None else value.decode("latin-1")

    def carries_any(self, names: AbstractSet[str]) -> bool:
        request = self.request
        if type(request) is RelayedRequest and type(names) is frozenset:
            found = request.carries_any(names)  # one search of the head, left unparsed
            if found is not None:
                return found
        return Headers.carries_any(self, names)

    @property
    def _items(self) -> list[tuple[str, str]]:
        request = self.request
        if request is not None:  # first use
            wire = request.headers
            _ITEMS.__set__(self, [(k.decode("latin-1"), v.decode("latin-1")) for k, v in wire])
            self.request = None
        items: list[tuple[str, str]] = _ITEMS.__get__(self)
        return items

    @_items.setter
    def _items(self, items: list[tuple[str, str]]) -> None:
        _ITEMS.__set__(self, items)
        self.request = None


def _picked(fields: HeaderList) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The first Host, `x-sofamesh-service` and `x-sofamesh-caller` values, as `get` finds them."""
    host = service = caller = None
    for name, value in fields:
        if name == b"host":
            if host is None:
                host = value
        elif name == _SERVICE_B:
            if service is None:
                service = value
        elif name == _CALLER_B and caller is None:
            caller = value
    return host, service, caller


def request_to_invocation(req: HttpRequest, protocol: str = "http") -> Invocation:
    picked = req.picked if type(req) is RelayedRequest else None
    if picked is not None:  # read by the codec's split, the fields still unparsed
        host, service, caller, _ = picked
    else:
        host, service, caller = _picked(req.headers)
    target = req.target
    q = target.find("?")
    # Positional (protocol, service, method, headers, caller, deadline, peer, payload,
    # idempotent): a class called with keywords builds a dict for them, 2,700 instructions.
    return Invocation(
        protocol,
        _service(
            None if service is None else service.decode("latin-1"),
            "" if host is None else host.decode("latin-1"),
        ),
        target if q < 0 else target[:q],
        WireHeaders(req),
        "" if caller is None else caller.decode("latin-1"),
        None,
        "",
        req,
        req.method in IDEMPOTENT_METHODS,
    )


def parse_timeout_ms(headers: Headers) -> float | None:
    """The remaining time a caller grants, in seconds, from `x-sofamesh-timeout-ms`."""
    request = headers.request if type(headers) is WireHeaders else None
    if request is not None:  # without decoding them all
        picked = request.picked if type(request) is RelayedRequest else None
        if picked is not None:
            field = picked[3]
        else:
            field = next((v for k, v in request.headers if k == _TIMEOUT_B), None)
        raw = None if field is None else field.decode("latin-1")
    else:
        raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        ms = float(raw)
    except ValueError:
        return None
    return ms / 1000 if ms >= 0 else None


_MESH_SET = frozenset({SERVICE_HEADER, CALLER_HEADER, TIMEOUT_HEADER}) | HOP_BY_HOP


def invocation_to_request(inv: Invocation, now: float) -> HttpRequest:
    """The request to send upstream: the caller's, with mesh headers set for the next hop."""
    req: HttpRequest = inv.payload
    headers = inv.headers
    source = headers.request if type(headers) is WireHeaders else None
    if source is req and type(req) is RelayedRequest:
        forwarded = _forwarded(inv, req, now)
        if forwarded is not None:
            return forwarded
    wire = None if source is None else source.headers
    if wire is not None:  # nothing read or changed them: the fields as they came
        raw = [(k, v) for k, v in wire if k not in _MESH_SET_B]
    else:
        raw = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers.items()
            if k not in _MESH_SET
        ]
    service = inv.service.encode("latin-1")
    raw.append((_SERVICE_B, service))
    caller = inv.caller.encode("latin-1") if inv.caller else None
    if caller is not None:
        raw.append((_CALLER_B, caller))
    if inv.deadline is not None:
        raw.append((_TIMEOUT_B, b"%d" % max(0, int((inv.deadline - now) * 1000))))
    if wire is not None and checked(wire) and _plain(service, caller):
        # The caller's fields as the parser checked them, and the mesh's, checked here (the
        # service may come from a rule): the writer need not check them again.
        raw = ParsedFields(raw)
        raw.checked = True
    return HttpRequest(
        req.method, req.target, raw, req.body, "1.1", req.stream_threshold, req.stream
    )


def _plain(service: bytes, caller: bytes | None) -> bool:
    return valid_value(service) and (caller is None or valid_value(caller))


def _forwarded(inv: Invocation, req: RelayedRequest, now: float) -> HttpRequest | None:
    """`invocation_to_request` for a relayed request nobody read the fields of: its kept
    lines and the mesh's, as one `bytes`; None where the usual way must decide."""
    mesh = _mesh_lines(inv.service, inv.caller)
    if mesh is None:
        return None
    deadline = inv.deadline
    if deadline is None:
        return req.forward(req.method, req.target, mesh[0], mesh[1], None)
    ms = int((deadline - now) * 1000)
    return req.forward(req.method, req.target, mesh[0], mesh[1], b"%d" % (ms if ms > 0 else 0))


@functools.lru_cache(maxsize=1024)
def _mesh_lines(service: str, caller: str) -> tuple[bytes, HeaderList] | None:
    """The service and caller field lines, and the fields they are; None for a value the
    writer would refuse or latin-1 cannot spell (the usual way raises then)."""
    added = [(_SERVICE_B, _latin1(service))]
    if caller:
        added.append((_CALLER_B, _latin1(caller)))
    if not all(value and valid_value(value) for _, value in added):
        return None
    return b"".join(b"%s: %s\r\n" % field for field in added), added


def _latin1(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return b""  # refused above


_SERVICE_B, _CALLER_B, _TIMEOUT_B = (
    h.encode() for h in (SERVICE_HEADER, CALLER_HEADER, TIMEOUT_HEADER)
)
_HOP_BY_HOP_B = PROXY_DROP  # HOP_BY_HOP, as the codec names them
_MESH_SET_B = frozenset(h.encode() for h in _MESH_SET)
assert _MESH_SET_B == FORWARD_DROP  # what a relayed request's kept lines lack


# What a peer mesh hop's `x-sofamesh-error` says of the app behind it. Never
# reached: as safe to retry elsewhere as a refused connection. Reset or timed
# out: the peer's app may have seen the request, so the caller's own policy
# decides as for its own reset or timeout (an idempotent request killed with
# its provider is retried elsewhere).
_PEER_STATUS = {
    **{
        s.value.encode(): Status.CONNECT_FAILED
        for s in (Status.CONNECT_FAILED, Status.NO_ENDPOINT, Status.UNAVAILABLE)
    },
    Status.UPSTREAM_RESET.value.encode(): Status.UPSTREAM_RESET,
    Status.TIMEOUT.value.encode(): Status.TIMEOUT,
}
_ERROR_HEADER_B = ERROR_HEADER.encode()


def response_to_result(resp: HttpResponse) -> Result:
    status = Status.OK
    if resp.status >= 500:
        status = Status.APP_ERROR
        for k, v in resp.headers:
            if k == _ERROR_HEADER_B:
                status = _PEER_STATUS.get(v, Status.APP_ERROR)
    return Result(status, resp.status, None, resp)  # positional: no keyword dict


def result_to_response(result: Result, service: str) -> HttpResponse:
    """What the caller receives: the provider's response, or a mesh-made error."""
    if isinstance(result.payload, HttpResponse):
        resp = result.payload
        if type(resp) is RelayedResponse and resp.forward():
            return resp  # unread: its kept field lines lack the hop-by-hop ones already
        headers = [(k, v) for k, v in resp.headers if k not in _HOP_BY_HOP_B]
        if checked(resp.headers):  # fewer of the fields the parser checked: still checked
            headers = ParsedFields(headers)
            headers.checked = True
        resp.headers = headers
        return resp
    if isinstance(result.payload, bytes):
        return answer_response(result)
    return error_response(result.status, result.detail or f"{service}: {result.status.value}")


def answer_response(result: Result) -> HttpResponse:
    """A mesh-made answer (body bytes as payload): its code, or the status's usual one."""
    code = result.code or STATUS_TO_HTTP.get(result.status, 200)
    headers = to_raw(result.headers)
    if "content-type" not in result.headers:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    return HttpResponse(status=code, headers=headers, body=result.payload)


def error_response(status: Status, detail: str) -> HttpResponse:
    body = (detail + "\n").encode()
    return HttpResponse(
        status=STATUS_TO_HTTP.get(status, 500),
        headers=[
            (b"content-type", b"text/plain; charset=utf-8"),
            (ERROR_HEADER.encode(), status.value.encode()),
        ],
        body=body,
    )
