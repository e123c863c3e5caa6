"""The console's pages: time to first render with 200 services and 50 data planes,
and the weight of its JavaScript and CSS.

    PYTHONPATH=src .venv/bin/python benchmarks/console.py [--services 200] [--dataplanes 50]
        [--loads 10] [--quick]

A control plane process (sqlite store, file registry) gets `--dataplanes` data planes'
reports (each providing its share of the `--services` services, calling four others, with
traffic counters, reported twice so rates exist), every provider is published in the
registry, and rules of every kind name the services (a rate limit for each of them, twenty
of every other kind; three versions). Debian's Chromium, through Playwright, then loads
every page from scratch `--loads` times (a new browser context each, so nothing is cached;
logged in by its token): the figure is the time from the navigation's start to the moment
the page has drawn its first data (the console clears `aria-busy` on `<main>` then; for the
services page, also every row present), from `performance.now()` in the page, median and
worst; the control plane on asyncio, then on trio (`--backend both`, the default but with
--quick). Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from control_common import start_control, workspace
from netutil import add_backend_arg, backends_of
from playwright.sync_api import Browser, sync_playwright

from sofamesh.control.console import load_assets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.console.crowd import crowd
from tests.console.stage import CHROMIUM, CHROMIUM_ARGS

KINDS = (
    "routes",
    "load_balancing",
    "breakers",
    "rate_limits",
    "hot_params",
    "auth",
    "faults",
    "fallbacks",
    "resource_limits",
)


def pages(first_service: str) -> list[tuple[str, str]]:
    """(label, hash route) of every page."""
    return [
        ("overview", "overview"),
        ("services page", "services"),
        ("a service", f"services/{first_service}"),
        ("topology", "topology"),
        ("sidecars", "sidecars"),
        ("a data plane", "sidecars/app0-1"),
        ("governance, all kinds", "governance"),
        *((f"governance, {k}", f"governance/{k}") for k in KINDS),
        ("a rule (rate limit)", "governance/rate_limits/0"),
        ("YAML", "yaml"),
        ("history", "history"),
        ("access", "access"),
    ]


# Installed before the page's own scripts: notes when <main> first stops being busy
# (and, on the services page, holds every row).
WATCH = """
new MutationObserver((_, obs) => {
  const main = document.querySelector('main#main');
  if (!main || main.hasAttribute('aria-busy')) return;
  if (location.hash.endsWith('/services') &&
      document.querySelectorAll('#service-table tbody tr').length !== %d) return;
  window.__rendered = performance.now();
  obs.disconnect();
}).observe(document, {childList: true, subtree: true, attributes: true});
"""


def first_render(browser: Browser, url: str, token: str, route: str, services: int) -> float:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"sessionStorage.setItem('sofamesh.token', {json.dumps(token)})")
    context.add_init_script(WATCH % services)
    page = context.new_page()
    page.goto(f"{url}/#/w/bench/{route}")
    page.locator("main#main:not([aria-busy])").wait_for(timeout=30_000)
    if route == "services":
        page.locator("#service-table tbody tr").nth(services - 1).wait_for(timeout=30_000)
    ms = float(page.evaluate("window.__rendered"))
    context.close()
    return ms


def weight() -> tuple[int, int, int]:
    """Bytes of JavaScript and CSS (and both gzipped, as a proxy would send them)."""
    assets = load_assets()
    js = sum(len(a.body) for p, a in assets.items() if p.endswith(".js"))
    css = sum(len(a.body) for p, a in assets.items() if p.endswith(".css"))
    gz = sum(
        len(zlib.compress(a.body, 9)) for p, a in assets.items() if p.endswith((".js", ".css"))
    )
    return js, css, gz


def measure(url: str, token: str, routes: list[tuple[str, str]], loads: int, n: int) -> Any:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        first_render(browser, url, token, "services", n)  # warm the server
        times = {
            label: [first_render(browser, url, token, route, n) for _ in range(loads)]
            for label, route in routes
        }
        browser.close()
    return times


def run(
    args: argparse.Namespace, backend: str, loads: int
) -> tuple[dict[str, list[float]], list[float]]:
    """A crowded control plane on `backend`: each page's first renders and the catalog's
    answer times, in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_control(Path(tmp), backend, report_interval=30, lost_after=600)
        try:
            admin, dp_token = workspace(url)
            token = admin.token or ""
            names = crowd(url, token, dp_token, Path(tmp) / "reg", args.services, args.dataplanes)
            api_ms = []
            for _ in range(loads):
                t = time.perf_counter()
                got = admin.call("GET", "/api/v1/workspaces/bench/services")
                api_ms.append((time.perf_counter() - t) * 1000)
            assert len(got) == args.services, len(got)
            return measure(url, token, pages(names[0]), loads, args.services), api_ms
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--dataplanes", type=int, default=50)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 load of each page")
    add_backend_arg(parser)
    args = parser.parse_args()
    loads = 1 if args.quick else args.loads
    backends = backends_of(args)
    runs = {backend: run(args, backend, loads) for backend in backends}
    js, css, gz = weight()
    load = f"{args.services} services / {args.dataplanes} data planes"
    print(f"Every page, first render ({loads} loads each, each in a fresh browser context):\n")
    print("| page | " + " | ".join(f"median, {b} | worst, {b}" for b in backends) + " |")
    print("|---|" + "---|---|" * len(backends))
    for label in runs[backends[0]][0]:
        figures = [runs[b][0][label] for b in backends]
        cells = " | ".join(f"{statistics.median(ms):.0f} ms | {max(ms):.0f} ms" for ms in figures)
        print(f"| {label}, {load} | {cells} |")
    answers = ", ".join(f"{statistics.median(runs[b][1]):.0f} ms on {b}" for b in backends)
    print(f"\nThe catalog's answer (`GET .../services`), median: {answers}")
    print("\nWeight of the console (every module and the stylesheet, uncompressed):\n")
    print("| JavaScript | CSS | both, gzip -9 |")
    print("|---|---|---|")
    print(f"| {js / 1024:.1f} KiB | {css / 1024:.1f} KiB | {gz / 1024:.1f} KiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
