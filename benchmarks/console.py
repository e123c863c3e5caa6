"""The console's services page: time to first render with 200 services and 50 data planes,
and the weight of its JavaScript and CSS.

    PYTHONPATH=src .venv/bin/python benchmarks/console.py [--services 200] [--dataplanes 50]
        [--loads 10] [--quick]

A control plane process (sqlite store, file registry) gets `--dataplanes` data planes'
reports (each providing its share of the `--services` services, calling four others, with
traffic counters, reported twice so rates exist), and every provider is published in the
registry. Debian's Chromium, through Playwright, then loads `/#/w/bench/services` from
scratch `--loads` times (a new browser context each, so nothing is cached; logged in by
its token): the figure is the time from the navigation's start to the moment the table
shows every service (`performance.now()` in the page), median and worst. Prints Markdown.
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
from playwright.sync_api import Browser, sync_playwright

from sofamesh.cli.client import Client
from sofamesh.control.console import load_assets
from sofamesh.endpoint import Endpoint
from sofamesh.registry.file import FileRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.console.stage import CHROMIUM, CHROMIUM_ARGS


def report(i: int, services: list[str], n: int, requests: int) -> dict[str, Any]:
    mine = services[i::n]
    calls = [services[(i * 7 + k) % len(services)] for k in range(4)]
    traffic = [
        {
            "direction": "inbound",
            "service": s,
            "requests": requests,
            "errors": requests // 50,
            "p99": 12.5,
        }
        for s in mine
    ] + [
        {"direction": "outbound", "service": s, "requests": requests // 2, "errors": 0, "p99": 20.0}
        for s in calls
    ]
    return {
        "id": f"app{i}-1",
        "app": f"app{i}",
        "mode": "sidecar",
        "version": "bench",
        "provides": mine,
        "calls": calls,
        "traffic": traffic,
        "pod": {"name": f"app{i}-7d9f", "namespace": "bench", "phase": "Running"},
        "started_at": time.time(),
        "injected_at": str(int(time.time())),
    }


def populate(url: str, tmp: Path, n_services: int, n_planes: int) -> Client:
    admin, token = workspace(url)
    services = [f"com.example.Service{k:03d}" for k in range(n_services)]
    # Entries owned by this process (alive for the whole run), written as `publish` does.
    registry = FileRegistry(tmp / "reg", lease=3600)
    for k, name in enumerate(services):
        meta = {"mode": "sidecar"}
        app = f"app{k % n_planes}"
        registry._publish(Endpoint(name, "127.0.0.1", 20000 + k, app=app, meta=meta))
    dp = Client(url, token)
    for requests in (1000, 1500):  # two reports: rates are their differences
        for i in range(n_planes):
            dp.call(
                "POST",
                "/api/v1/workspaces/bench/dataplanes",
                report(i, services, n_planes, requests),
            )
        time.sleep(1.0)  # reports of one data plane must be apart (the flood guard)
    return admin


# Installed before the page's own scripts: notes the time the table first has every row.
WATCH = """
new MutationObserver((_, obs) => {
  if (document.querySelectorAll('#service-table tbody tr').length === %d) {
    window.__rendered = performance.now();
    obs.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""


def first_render(browser: Browser, url: str, token: str, expect: int) -> float:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"sessionStorage.setItem('sofamesh.token', {json.dumps(token)})")
    context.add_init_script(WATCH % expect)
    page = context.new_page()
    page.goto(f"{url}/#/w/bench/services")
    page.locator("#service-table tbody tr").nth(expect - 1).wait_for(timeout=30_000)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--dataplanes", type=int, default=50)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 loads")
    args = parser.parse_args()
    loads = 3 if args.quick else args.loads
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_control(Path(tmp), report_interval=30, lost_after=600)
        try:
            admin = populate(url, Path(tmp), args.services, args.dataplanes)
            api_ms = []
            for _ in range(loads):
                t = time.perf_counter()
                got = admin.call("GET", "/api/v1/workspaces/bench/services")
                api_ms.append((time.perf_counter() - t) * 1000)
            assert len(got) == args.services, len(got)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                first_render(browser, url, admin.token or "", args.services)  # warm the server
                times = [
                    first_render(browser, url, admin.token or "", args.services)
                    for _ in range(loads)
                ]
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)
    js, css, gz = weight()
    print(f"Services page, first render ({loads} loads, each in a fresh browser context):\n")
    print("| page | median | worst | of which the catalog's answer, median |")
    print("|---|---|---|---|")
    label = f"services page, {args.services} services / {args.dataplanes} data planes"
    median, worst, api = statistics.median(times), max(times), statistics.median(api_ms)
    print(f"| {label} | {median:.0f} ms | {worst:.0f} ms | {api:.0f} ms |")
    print("\nWeight of the console (every module and the stylesheet, uncompressed):\n")
    print("| JavaScript | CSS | both, gzip -9 |")
    print("|---|---|---|")
    print(f"| {js / 1024:.1f} KiB | {css / 1024:.1f} KiB | {gz / 1024:.1f} KiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
