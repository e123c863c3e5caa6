"""The control plane serves the console's files at `/` and `/console/...`, the API unchanged."""

from __future__ import annotations

import configparser
import fnmatch
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.control.harness import running_control

from sofamesh.control.console import load_assets

pytestmark = pytest.mark.anyio


def test_every_module_the_page_imports_is_packaged() -> None:
    assets = load_assets()
    page = assets["/"].body.decode()
    wanted = set(re.findall(r'(?:href|src)="(/console/[^"]+)"', page))
    for path, asset in assets.items():
        if path.endswith(".js"):
            here = path.rsplit("/", 1)[0]
            for name in re.findall(r'from "\./([\w.]+)"', asset.body.decode()):
                wanted.add(f"{here}/{name}")
    assert wanted and wanted <= set(assets), wanted - set(assets)
    # The page names every module up front (one round of requests, not one per import level).
    preloaded = set(re.findall(r'rel="modulepreload" href="([^"]+)"', page))
    modules = {p for p in assets if p.endswith(".js")}
    assert preloaded == modules - {"/console/js/main.js"}
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


def test_setup_cfg_ships_every_file_of_the_console() -> None:
    """`pip install sofamesh` serves the console: package_data names every static file."""
    root = Path(__file__).resolve().parents[2]
    config = configparser.ConfigParser()
    config.read(root / "setup.cfg")
    patterns = config["options.package_data"]["sofamesh.control.console"].split(",")
    package = root / "src" / "sofamesh" / "control" / "console"
    files = [p.relative_to(package).as_posix() for p in (package / "static").rglob("*.*")]
    assert files
    for name in files:
        assert any(fnmatch.fnmatch(name, p.strip()) for p in patterns), name


async def test_page_assets_headers_and_the_api_beside_them(
    tmp_path: Path, monkeypatch: Any, anyio_backend: str
) -> None:
    async with (
        running_control(tmp_path, monkeypatch) as (cp, admin),
        httpx.AsyncClient(base_url=f"http://{cp.bound}") as c,
    ):
        page = await c.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/console/js/main.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"

        js = await c.get("/console/js/main.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        css = await c.get("/console/app.css")
        assert css.headers["content-type"].startswith("text/css")
        again = await c.get("/console/app.css", headers={"if-none-match": css.headers["etag"]})
        assert again.status_code == 304 and not again.content

        # Unknown files, other methods, and the API are the API's: JSON answers.
        missing = await c.get("/console/js/nope.js")
        assert missing.status_code == 404 and "error" in missing.json()
        assert (await c.post("/")).status_code == 404
        traversal = await c.get("/console/../control.db")
        assert traversal.status_code == 404 and "error" in traversal.json()
        assert (await c.get("/api/v1/whoami")).status_code == 401
        assert (await admin.ok("GET", "/api/v1/whoami"))["user"] == "admin"
