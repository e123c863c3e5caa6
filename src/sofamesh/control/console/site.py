"""Serve the console's files from the package; hand every other request to the API.

Files are read once at start and answered from memory with a strong ETag
(`If-None-Match` gets 304) and `Cache-Control: no-cache`, so a browser revalidates
on each load and an upgraded control plane is seen at once. A strict
Content-Security-Policy allows only this origin's scripts, styles and API: a
reflected string can never run as code, and no page loads anything from elsewhere.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import attrs

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.protocols.http.server import ConnInfo, Http1Handler

PREFIX = "/console/"
TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
}
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


@attrs.frozen
class Asset:
    content_type: bytes
    body: bytes
    etag: bytes


def load_assets() -> dict[str, Asset]:
    """Every file under `static/`, by the path it is served at (`/` for the page)."""
    root = resources.files("sofamesh.control.console") / "static"
    found: dict[str, Asset] = {}

    def walk(node: resources.abc.Traversable, rel: str) -> None:
        for child in node.iterdir():
            path = f"{rel}{child.name}"
            if child.is_dir():
                walk(child, path + "/")
                continue
            kind = TYPES.get("." + child.name.rpartition(".")[2])
            if kind is None:
                continue
            body = child.read_bytes()
            etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
            found[PREFIX + path] = Asset(kind, body, etag)

    walk(root, "")
    found["/"] = found[PREFIX + "index.html"]
    return found


class ConsoleSite:
    """An HTTP/1.1 handler: the console's files, else the API's `dispatcher`."""

    def __init__(self, api: Http1Handler, assets: dict[str, Asset] | None = None) -> None:
        self.api = api
        self.assets = assets if assets is not None else load_assets()

    async def __call__(self, req: HttpRequest, conn: ConnInfo) -> HttpResponse:
        path = req.target.partition("?")[0]
        asset = self.assets.get(path) if req.method == "GET" else None
        if asset is None:
            return await self.api(req, conn)
        headers = [(b"etag", asset.etag), *SECURITY_HEADERS]
        if req.header(b"if-none-match") == asset.etag:
            return HttpResponse(status=304, headers=headers)
        headers.append((b"content-type", asset.content_type))
        return HttpResponse(status=200, headers=headers, body=asset.body)
