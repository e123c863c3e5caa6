"""Responses the mesh makes itself: direct responses, fallbacks, injected aborts.

The result must reach the caller with the configured code, headers and body,
so for HTTP the payload is a ready `HttpResponse` (the codec passes it through
as it does a provider's). Other protocols get the body bytes as payload and
the code in `Result.code`, for their codec to frame.
"""

from __future__ import annotations

from collections.abc import Iterable

from sofamesh.codecs.http1 import HttpResponse
from sofamesh.governance.routing_rules import StaticResponse
from sofamesh.model import Headers, Result, Status
from sofamesh.protocols.http.mapping import STATUS_TO_HTTP

HTTP_PROTOCOLS = frozenset({"http", "h2"})
FALLBACK_HEADER = "x-sofamesh-fallback"  # names the rule that answered instead of the provider


def make_result(
    protocol: str,
    status: Status,
    code: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    detail: str,
) -> Result:
    """A complete result: `code` 0 means the status's usual code (HTTP: 429 for rate_limited...)."""
    hdrs = Headers(headers)
    if protocol in HTTP_PROTOCOLS:
        code = code or STATUS_TO_HTTP.get(status, 200)
        if "content-type" not in hdrs:
            hdrs.add("content-type", "text/plain; charset=utf-8")
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs]
        payload: object = HttpResponse(status=code, headers=raw, body=body)
    else:
        payload = body
    return Result(status=status, code=code, headers=hdrs, payload=payload, detail=detail)


def static_result(
    protocol: str, response: StaticResponse, detail: str, extra: Iterable[tuple[str, str]] = ()
) -> Result:
    """The result for a configured `StaticResponse` (a fresh one per call: results are mutable)."""
    return make_result(
        protocol,
        Status(response.status),
        response.code,
        [*response.headers, *extra],
        response.body.encode(),
        detail,
    )
