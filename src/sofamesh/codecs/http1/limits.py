"""Size limits of the HTTP/1.1 codecs: one frozen value shared by every connection."""

from __future__ import annotations

from typing import Any

import attrs

from sofamesh.codecs.http1.paths import ESCAPED_SLASH_ACTIONS, REJECT_REQUEST


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be positive, got {value}")


@attrs.frozen(slots=True)
class Http1Limits:
    """What a peer may send before the codec rejects the message.

    - `max_header_bytes`: request/status line plus header section. This is
      h11's `max_incomplete_event_size`; exceeding it is a 431 (RFC 6585 §5).
      Node.js allows 80 KiB, nginx 8 KiB per buffer: 64 KiB accepts real-world
      cookies while keeping one connection's buffer bounded.
    - `max_body_size`: a buffered body above this is a 413 (RFC 9110 §15.5.14),
      decided from Content-Length before reading the body when it is known.
    - `max_headers`: number of header fields; above it is a 431.
    - `path_with_escaped_slashes_action`: what a request path's `%2F` / `%5C`
      get (Envoy's name; see `paths.py`). REJECT_REQUEST by default: an ASGI
      app sees the path percent-decoded, so a kept `%2F` would reach it as a
      separator the rules never saw.
    - `stream_threshold`: a server codec stamps it on each request
      (`HttpRequest.stream_threshold`): a response body above it reaches this
      listener as a stream, which `max_body_size` does not bound. 0: never.
    """

    max_header_bytes: int = attrs.field(default=64 * 1024, validator=_positive)
    max_body_size: int = attrs.field(default=16 * 1024 * 1024, validator=_positive)
    max_headers: int = attrs.field(default=100, validator=_positive)
    path_with_escaped_slashes_action: str = attrs.field(
        default=REJECT_REQUEST, validator=attrs.validators.in_(ESCAPED_SLASH_ACTIONS)
    )
    stream_threshold: int = attrs.field(default=0, validator=attrs.validators.ge(0))


DEFAULT_LIMITS = Http1Limits()
