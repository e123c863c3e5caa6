"""The local API for SDKs in sidecar mode (`/api/v1/...`; the client is `sofamesh.sdk.control`).

A publication is checked against the sidecar's `local_api` config before it reaches
the registry: the service must be one the app may publish (listed on an inbound
listener or in `local_api.services`), the upstream a loopback address (or one in
`local_api.upstreams`), and the lease a finite number of seconds up to
`local_api.max_lease`. Otherwise a process holding the token could still send other
apps' callers, and their credentials, anywhere, for ever.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from sofamesh.codecs.http1 import HttpRequest
from sofamesh.config import Address
from sofamesh.config.local_api import allows_service, allows_upstream
from sofamesh.sidecar.guard import Refused

if TYPE_CHECKING:
    from sofamesh.sidecar.app import Sidecar

DEFAULT_LEASE = 10.0


def json_body(req: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(req.body)
    except ValueError as e:
        raise Refused(400, f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value:
        raise Refused(400, f"{name}: expected a non-empty string, got {value!r}")
    return value


def publication(sidecar: Sidecar, body: dict[str, Any]) -> tuple[str, str, Address, str, float]:
    """(service, protocol, upstream, app, lease) of a publish request, or `Refused`."""
    limits = sidecar.config.local_api
    service = text_field(body, "service")
    protocol = text_field(body, "protocol", "http")
    try:
        upstream = Address.parse(body.get("upstream"))
    except ValueError as e:
        raise Refused(400, f"upstream: {e}") from None
    lease = body.get("lease", DEFAULT_LEASE)
    if isinstance(lease, bool) or not isinstance(lease, int | float):
        raise Refused(400, f"lease: expected a number of seconds, got {lease!r}")
    if not (math.isfinite(lease) and 0 < lease <= limits.max_lease):
        raise Refused(400, f"lease: must be within (0, {limits.max_lease}] seconds, got {lease}")
    published = tuple(s for lc in sidecar.config.inbound for s in lc.services)
    if not allows_service(limits, service, published):
        raise Refused(403, f"service {service!r} is not one this app may publish")
    if not allows_upstream(limits, upstream):
        raise Refused(403, f"upstream {upstream} is neither loopback nor allowed")
    return service, protocol, upstream, str(body.get("app", "")), float(lease)
