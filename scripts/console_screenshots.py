"""Regenerate docs/console/*.png: every page of the console on a small live mesh.

Starts a control plane, three sidecars (two providers, one caller), plain apps and traffic
on this machine, applies a few rules (a rate limit in shadow mode, a fault that fails some
calls), then photographs each page with Debian's Chromium through Playwright at 1280x800
(and a phone width, and the dark scheme). Run from the repository root:

    PYTHONPATH=src .venv/bin/python scripts/console_screenshots.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402
from tests.console.crowd import crowd  # noqa: E402
from tests.console.stage import CHROMIUM, CHROMIUM_ARGS, PASSWORD, Stage, eventually  # noqa: E402

WS = "/api/v1/workspaces/shop"
RULES = [
    ({"routes": [{"service": "orders-svc", "timeout": 2}]}, "orders: 2 s timeout"),
    (
        {
            "routes": [{"service": "orders-svc", "timeout": 2}],
            "rate_limits": [
                {
                    "name": "orders-qps",
                    "service": "orders-svc",
                    "count": 8,
                    "enforcement": {"shadow": True},
                }
            ],
        },
        "shadow rate_limits orders-qps",
    ),
    (
        {
            "routes": [{"service": "orders-svc", "timeout": 2}],
            "rate_limits": [
                {
                    "name": "orders-qps",
                    "service": "orders-svc",
                    "count": 8,
                    "enforcement": {"shadow": True},
                }
            ],
            "faults": [
                {
                    "name": "inventory-chaos",
                    "service": "inventory-svc",
                    "direction": "inbound",
                    "abort": {"code": 503, "percentage": 15},
                }
            ],
            "auth": {
                "inbound": {
                    "enforcement": {"shadow": True},
                    "rules": [{"service": "inventory-svc", "allow": ["orders"]}],
                }
            },
        },
        "faults inventory-chaos: 15% aborts; shadow auth: only orders calls inventory",
    ),
]


def mesh(stage: Stage) -> None:
    stage.control()
    token = stage.workspace("shop")
    stage.workspace("staging")
    stage.user("vic", "vic-password", "viewer", "shop")
    for app, service, pod in (
        ("orders", "orders-svc", "orders-7d9f"),
        ("inventory", "inventory-svc", "inventory-5c2a"),
    ):
        env = {
            "POD_NAME": pod,
            "POD_NAMESPACE": "shop",
            "POD_PHASE": "Running",
            "SOFAMESH_INJECTED_AT": str(int(time.time()) - 3600),
        }
        stage.sidecar(app, "shop", token, provides=service, env=env)
    web = stage.sidecar(
        "web",
        "shop",
        token,
        env={"POD_NAME": "web-66b1", "POD_NAMESPACE": "shop", "POD_PHASE": "Running"},
    )
    for document, message in RULES:
        stage.call("POST", f"{WS}/rules", {"document": document, "message": message})
    stage.drive(web["outbound[0]"], "orders-svc", rate=15)
    stage.drive(web["outbound[0]"], "inventory-svc", rate=10)


def shoot(
    page: Page, url: str, name: str, out: Path, wait_for: str = "main h1", full: bool = False
) -> None:
    page.goto(url)
    try:
        page.wait_for_selector(wait_for)
    except Exception:
        page.screenshot(path=str(out / f"{name}-failed.png"))
        raise
    page.wait_for_timeout(600)  # let a refresh land so the numbers are live ones
    page.screenshot(path=str(out / f"{name}.png"), full_page=full)
    print(f"{out / name}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Stage(Path(tmp))
        try:
            mesh(stage)
            services = lambda: stage.call("GET", f"{WS}/services")  # noqa: E731
            eventually(
                lambda: len(services()) == 2 and all(s["metrics"]["rps"] for s in services()),
                60,
                "traffic in the catalog",
            )
            eventually(
                lambda: len(stage.call("GET", f"{WS}/services/orders-svc/samples")["samples"]) >= 4,
                60,
                "a few samples",
            )
            photograph(stage, args.out)
        finally:
            stage.close()
    with tempfile.TemporaryDirectory() as tmp:
        stage = Stage(Path(tmp))
        try:
            photograph_crowd(stage, args.out)
        finally:
            stage.close()
    return 0


def photograph_crowd(stage: Stage, out: Path) -> None:
    """The topology of 200 services and 50 data planes: the busiest 40, and a filter."""
    stage.control(lost_after=600)
    dp_token = stage.workspace("bench")
    crowd(stage.url, stage.login("admin", PASSWORD), dp_token, stage.tmp / "reg", 200, 50)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        log_in(page, stage.url)
        shoot(page, f"{stage.url}/#/w/bench/topology", "topology-crowd", out, "svg.topology")
        browser.close()


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/")
    page.get_by_label("User").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#whoami")


def photograph(stage: Stage, out: Path) -> None:
    base = stage.url + "/#/w/shop"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        shoot(page, stage.url + "/", "login", out, "#login-user")
        log_in(page, stage.url)
        shoot(page, f"{base}/overview", "overview", out, "#stat-connected")
        shoot(page, f"{base}/services", "services", out, "#service-table table")
        shoot(page, f"{base}/services/orders-svc", "service", out, "svg.chart path.line")
        shoot(page, f"{base}/topology", "topology", out, "svg.topology .edge")
        shoot(page, f"{base}/sidecars", "sidecars", out, "#sidecar-table table")
        dp = next(r["id"] for r in stage.call("GET", f"{WS}/sidecars") if r["app"] == "web")
        shoot(
            page, f"{base}/sidecars/{dp}", "sidecar", out, "table[aria-label=Clusters]", full=True
        )
        shoot(page, f"{base}/governance", "governance", out, "main table")
        shoot(page, f"{base}/governance/rate_limits/0", "rule-shadow", out, "#decisions table")
        shoot(page, f"{base}/governance/auth/0", "auth-shadow", out, "#decisions table")
        shoot(page, f"{base}/governance/routes/0", "route-no-shadow", out, "#decisions .no-shadow")
        page.goto(f"{base}/governance/rate_limits/0")
        page.wait_for_selector("#decisions table")
        page.get_by_label("Count (calls/s) *").fill("12")
        page.get_by_role("button", name="Review and apply in shadow mode").click()
        page.wait_for_selector("pre.diff")
        page.screenshot(path=str(out / "rule-review.png"), full_page=True)
        shoot(page, f"{base}/yaml", "yaml", out, "#yaml-text")
        shoot(page, f"{base}/history", "history", out, "main table")
        shoot(page, f"{base}/access", "access", out, "main table")
        page.close()
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        log_in(phone, stage.url)
        shoot(phone, f"{base}/sidecars", "sidecars-phone", out, "#sidecar-table table")
        phone.close()
        dark = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="dark")
        log_in(dark, stage.url)
        shoot(dark, f"{base}/overview", "overview-dark", out, "#stat-connected")
        dark.close()
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
