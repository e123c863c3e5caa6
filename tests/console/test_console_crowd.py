"""Every page readable with 200 services and 50 data planes: no table or page wider than
the window at 1280 px, and a topology of the busiest services with a filter to find the rest."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect
from tests.console.crowd import crowd
from tests.console.stage import PASSWORD, Stage
from tests.console.test_console_access import log_in

ROUTES = [
    "overview",
    "services",
    "services/com.example.Service000",
    "topology",
    "sidecars",
    "sidecars/app0-1",
    "governance",
    *(
        f"governance/{k}"
        for k in (
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
    ),
    "governance/rate_limits/0",
    "yaml",
    "history",
    "access",
]

# How far the page and each table reach past their boxes, in CSS pixels.
OVERFLOW = """() => {
  const doc = document.documentElement;
  const over = [doc.scrollWidth - doc.clientWidth];
  for (const wrap of document.querySelectorAll('.table-wrap')) {
    over.push(wrap.scrollWidth - wrap.clientWidth);
  }
  return Math.max(...over);
}"""


def open_page(page: Page, url: str, route: str) -> None:
    page.goto(f"{url}/#/w/bench/{route}")
    expect(page.locator("main#main")).not_to_have_attribute("aria-busy", "true", timeout=30_000)


def test_every_page_readable_with_200_services_and_50_data_planes(
    stage: Stage, browser: Browser
) -> None:
    stage.control(lost_after=600)
    dp_token = stage.workspace("bench")
    admin_token = stage.login("admin", PASSWORD)
    crowd(stage.url, admin_token, dp_token, stage.tmp / "reg", 200, 50)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, stage.url, "admin", PASSWORD)
    for route in ROUTES:
        open_page(page, stage.url, route)
        assert page.evaluate(OVERFLOW) <= 1, f"#/w/bench/{route} is wider than the window"

    open_page(page, stage.url, "services")
    expect(page.locator("#service-table tbody tr")).to_have_count(200)
    open_page(page, stage.url, "sidecars")
    expect(page.get_by_text("50 of 50 data planes")).to_be_visible()

    # The topology draws the busiest 40 of 200 services; the filter finds any other.
    open_page(page, stage.url, "topology")
    expect(page.locator("#topology-shown")).to_contain_text("Showing the 40 busiest of 200")
    expect(page.locator("svg.topology g.node.service")).to_have_count(40)
    page.get_by_label("Filter by service or app").fill("Service199")
    expect(page.locator("#topology-shown")).to_have_text("1 of 200 services.")
    expect(page.get_by_role("link", name="service com.example.Service199")).to_be_visible()
    page.get_by_label("Filter by service or app").fill("app7")  # an app: its services
    expect(page.locator("svg.topology g.node.service").first).to_be_visible()
    assert page.locator("svg.topology g.node.service").count() < 40
    page.close()
