"""Who may use the admin and local APIs: the checks every request passes before its handler.

- Every POST must say `Content-Type: application/json`. A web page can make a browser
  send a cross-origin POST only as a "simple" request (`text/plain`, form types); a JSON
  one needs a CORS preflight, which this API never grants. This is Envoy's admin defence.
- A request with an `Origin` header from anywhere but the admin address itself is
  refused: a browser names the page that made the request there.
- The local API (`/api/v1/...`) needs `Authorization: Bearer <token>`, the token the
  sidecar wrote to a file only its user can read (`sofamesh.sidecar.token`).

Each refusal is a `Refused` (403 or 400); the admin API answers it and logs it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sofamesh.codecs.http1 import HttpRequest
from sofamesh.config import Address
from sofamesh.config.local_api import is_loopback

LOCAL_API = "/api/v1/"


class Refused(Exception):
    """A request the admin API will not serve: `status` (400 or 403) and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def header(req: HttpRequest, name: bytes) -> bytes | None:
    return next((v for k, v in req.headers if k.lower() == name), None)


def check(req: HttpRequest, path: str, admin: Address | None, token: str) -> None:
    """Raise `Refused` unless `req` may reach the handler of `path`."""
    if req.method == "POST":
        ctype = (header(req, b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            raise Refused(400, "admin POSTs need Content-Type: application/json")
    origin = header(req, b"origin")
    if origin is not None and not _own_origin(origin, admin):
        raise Refused(403, f"cross-origin request from {origin.decode('latin-1')[:100]!r}")
    if path.startswith(LOCAL_API):
        given = header(req, b"authorization") or b""
        import hmac  # on the first admin request: it loads OpenSSL's digests (0.7 MB)

        if not (token and hmac.compare_digest(given, b"Bearer " + token.encode())):
            raise Refused(403, "the local API needs the sidecar's token (Authorization: Bearer)")


def _own_origin(origin: bytes, admin: Address | None) -> bool:
    if admin is None:
        return False
    try:
        parts = urlsplit(origin.decode("ascii"))
        port = parts.port
    except (UnicodeDecodeError, ValueError):
        return False
    host = parts.hostname or ""
    if parts.scheme != "http" or port != admin.port:
        return False
    return host == admin.host or (is_loopback(host) and is_loopback(admin.host))
