"""Answers the mesh makes itself: direct responses, fallbacks, injected aborts.

A rule's answer is a neutral `Result`: its status, its code as configured (0
means "the status's usual code in the caller's protocol"), its headers, and the
body bytes as the payload. Each protocol renders it on its listener (HTTP: a
response with that code, text/plain unless the headers name a content-type;
gRPC: one message and the status's trailers; Bolt: a response frame), so
nothing here knows how any protocol frames an answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from sofamesh.governance.routing_rules import StaticResponse
from sofamesh.model import Headers, Result, Status

FALLBACK_HEADER = "x-sofamesh-fallback"  # names the rule that answered instead of the provider


def make_result(
    status: Status,
    code: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    detail: str,
) -> Result:
    """A complete answer; `code` 0 leaves the code to the protocol (HTTP: 429 for rate_limited)."""
    return Result(status=status, code=code, headers=Headers(headers), payload=body, detail=detail)


def static_result(
    response: StaticResponse, detail: str, extra: Iterable[tuple[str, str]] = ()
) -> Result:
    """The result for a configured `StaticResponse` (a fresh one per call: results are mutable)."""
    return make_result(
        Status(response.status),
        response.code,
        [*response.headers, *extra],
        response.body.encode(),
        detail,
    )
