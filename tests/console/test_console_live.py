"""In a real browser, against a real control plane, sidecars and traffic: a rate limit
previewed in shadow mode, enforced, seen in the success rate, rolled back; the topology
edge; the sidecar list with injection time, pod, sync state and a sidecar that refused a
document by its own policy (`control.refuse_kinds`)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect
from tests.console.stage import PASSWORD, Stage, eventually
from tests.console.test_console_access import log_in

WS = "/api/v1/workspaces/shop"


def number(page: Page, selector: str) -> float:
    text = page.locator(selector).text_content() or ""
    return float(re.findall(r"[\d.]+", text)[0])


def mesh(stage: Stage) -> tuple[str, str]:
    """orders-svc behind the `orders` sidecar, called by `web` at 20/s; a spare dataplane token."""
    stage.control()
    token = stage.workspace("shop")
    pod = {"POD_NAME": "orders-7d9f", "POD_NAMESPACE": "shop", "POD_PHASE": "Running"}
    stage.sidecar(
        "orders",
        "shop",
        token,
        provides="orders-svc",
        env={**pod, "SOFAMESH_INJECTED_AT": "1764000000"},
    )
    web = stage.sidecar("web", "shop", token)
    stage.drive(web["outbound[0]"], "orders-svc", rate=20)
    return web["outbound[0]"], token


def test_shadow_then_enforce_then_roll_back(stage: Stage, browser: Browser) -> None:
    mesh(stage)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, stage.url, "admin", PASSWORD)

    # A new rate limit, reviewed (diff against the version in force) and applied in shadow.
    page.goto(stage.url + "/#/w/shop/governance/rate_limits")
    page.get_by_role("link", name="New rate limits rule").click()
    page.get_by_label("Name").fill("orders-qps")
    page.get_by_label("Service *").fill("orders-svc")
    page.get_by_label("Count (calls/s) *").fill("five")
    page.get_by_role("button", name="Review and apply in shadow mode").click()
    expect(page.locator("#f-count-err")).to_contain_text("expected float")  # at its field
    page.get_by_label("Count (calls/s) *").fill("5")
    page.get_by_role("button", name="Review and apply in shadow mode").click()
    expect(page.locator("pre.diff")).to_contain_text("+    shadow: true")
    page.get_by_role("button", name="Apply in shadow mode", exact=True).click()
    expect(page.get_by_text("Applied as v1")).to_be_visible()

    # Its page shows what it would have rejected, per data plane, rising.
    expect(page.locator("#would-reject strong")).not_to_have_text("0", timeout=20_000)
    first = number(page, "#would-reject")
    expect(page.get_by_role("cell", name=re.compile(r"^orders orders-"))).to_be_visible()
    eventually(lambda: number(page, "#would-reject") > first, what="would-reject rising")
    assert "shadow" in page.locator("h2 .badge").inner_text()

    # Enforce: the service's success rate shows the 429s.
    page.get_by_role("button", name="Enforce").click()
    page.locator("dialog.confirm").get_by_role("button", name="Enforce").click()
    expect(page.get_by_text("Applied as v2")).to_be_visible()
    expect(page.locator("h2 .badge")).to_have_text("enforced")
    page.goto(stage.url + "/#/w/shop/services/orders-svc")
    eventually(
        lambda: number(page, "#stat-success-rate .stat-value") < 60, what="429s in the success rate"
    )
    assert stage.traffic[0].statuses.get(429, 0) > 0

    # Roll back to v1 (shadow): the rejections stop, the success rate returns to 100%.
    page.goto(stage.url + "/#/w/shop/history")
    page.get_by_role("button", name="Roll back to v1").click()
    page.locator("dialog.confirm").get_by_role("button", name="Roll back").click()
    expect(page.get_by_text("v3 has v1's document")).to_be_visible()
    page.goto(stage.url + "/#/w/shop/services/orders-svc")
    expect(page.locator("#stat-success-rate .stat-value")).to_have_text("100%", timeout=20_000)
    page.close()


FAULT = {"faults": [{"service": "payments-svc", "delay": {"fixed_delay": 0.1}}]}


def report_expired_identity(stage: Stage, token: str) -> None:
    """A data plane whose control-plane identity expired reports so (it runs the latest rules)."""
    latest = stage.call("GET", f"{WS}/rules")["version"]
    body: dict[str, Any] = {
        "id": "legacy-1",
        "app": "legacy",
        "rules_version": latest,
        "tls": {
            "mode": "strict",
            "issuer": "control",
            "spiffe_id": "spiffe://cluster.local/ws/shop/app/legacy",
            "not_after": 1_700_000_000,  # long past: the console flags it
            "renew_after": 1_699_990_000,
        },
    }
    resp = httpx.post(
        stage.url + f"{WS}/dataplanes", json=body, headers={"authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text


def test_topology_and_the_sidecar_list(stage: Stage, browser: Browser) -> None:
    _outbound, token = mesh(stage)
    # An operator keeps fault injection out of this one, whatever the control plane pushes.
    stage.sidecar("canary", "shop", token, control={"refuse_kinds": ["faults"]})
    stage.call("POST", f"{WS}/rules", {"document": FAULT, "message": "a delay for payments"})
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, stage.url, "admin", PASSWORD)

    page.goto(stage.url + "/#/w/shop/topology")
    edge = page.locator('[data-edge="web->orders-svc"]')
    expect(edge).to_have_class(re.compile(r"\bgood\b"), timeout=20_000)
    expect(edge.locator("text")).to_have_text(re.compile(r"^\d+(\.\d)?/s$"))
    # a live rate (how high depends on this machine's load)
    assert number(page, '[data-edge="web->orders-svc"] text') > 0

    report_expired_identity(stage, token)
    page.goto(stage.url + "/#/w/shop/sidecars")
    orders = page.get_by_role("row").filter(has_text="orders-7d9f")
    expect(orders).to_contain_text("shop/orders-7d9f")
    expect(orders).to_contain_text("Running")
    expect(orders).to_contain_text("2025-11-24 16:00:00Z")  # injected at
    expect(orders.locator('[data-col="Sync"]')).to_have_text("SYNCED", timeout=20_000)
    canary = page.get_by_role("row").filter(has_text="canary")
    expect(canary.locator('[data-col="Sync"]')).to_contain_text("REJECTED", timeout=20_000)
    expect(canary).to_contain_text("rules of kind faults are refused by this data plane")
    web = page.get_by_role("row").filter(has=page.get_by_role("link", name="web", exact=True))
    legacy = page.get_by_role("row").filter(has_text="legacy")
    for synced in (web, legacy):  # the others took the same version
        expect(synced.locator('[data-col="Sync"]')).to_have_text("SYNCED", timeout=20_000)
    expect(legacy.locator('[data-col="mTLS"]')).to_contain_text("strict")
    expect(legacy.locator('[data-col="mTLS"]')).to_contain_text("EXPIRED")
    expect(legacy.locator('[data-col="mTLS"]')).to_contain_text("2023-11-14 22:13:20Z")
    expect(orders.locator('[data-col="mTLS"]')).to_have_text("off")
    page.get_by_label("Sync").select_option("REJECTED")
    expect(page.get_by_text("1 of 4 data planes")).to_be_visible()

    # A data plane's page: its live traffic and its clusters' endpoints.
    page.get_by_label("Sync").select_option("")
    page.get_by_role("link", name="web", exact=True).click()
    traffic = page.get_by_role("table", name="Traffic")
    expect(traffic.get_by_role("row").filter(has_text="orders-svc")).to_contain_text("outbound")
    clusters = page.get_by_role("table", name="Clusters")
    expect(clusters.get_by_role("row").filter(has_text="orders-svc")).to_contain_text("healthy")
    page.go_back()
    page.get_by_role("link", name="legacy", exact=True).click()  # its identity, on its page
    expect(page.get_by_text("spiffe://cluster.local/ws/shop/app/legacy")).to_be_visible()
    page.go_back()

    # Mark failed, with confirmation; the data plane carries it out.
    page.get_by_role("button", name=re.compile(r"^Mark failed: orders ")).click()
    page.locator("dialog.confirm").get_by_role("button", name="Mark failed").click()
    expect(page.get_by_text("Mark failed: asked")).to_be_visible()
    expect(orders.locator('[data-col="Health"]')).to_have_text("failed", timeout=20_000)

    # The lost connection is shown, not hidden.
    stage.procs[0].terminate()
    expect(page.locator("#conn")).to_have_text("connection lost", timeout=10_000)
    page.close()


def test_auth_previewed_in_shadow_then_enforced(stage: Stage, browser: Browser) -> None:
    mesh(stage)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, stage.url, "admin", PASSWORD)

    # Routes have no shadow mode: the page says so, with no shadow button.
    page.goto(stage.url + "/#/w/shop/governance/routes/0")
    expect(page.locator("#decisions .no-shadow")).to_contain_text("no shadow mode")
    expect(page.get_by_role("button", name="Review and apply in shadow mode")).to_have_count(0)

    # Only `nobody` may call orders-svc: applied in shadow, web's calls would be denied.
    page.goto(stage.url + "/#/w/shop/governance/auth/0")
    policy = '{"rules": [{"service": "orders-svc", "allow": ["nobody"]}]}'
    page.get_by_label("Inbound policy (JSON)").fill(policy)
    page.get_by_role("button", name="Review and apply in shadow mode").click()
    expect(page.locator("pre.diff")).to_contain_text("shadow: true")
    page.get_by_role("button", name="Apply in shadow mode", exact=True).click()
    expect(page.get_by_text("Applied as v1")).to_be_visible()
    expect(page.locator("#would-reject strong")).not_to_have_text("0", timeout=20_000)
    expect(page.locator("#would-reject")).to_contain_text("Would deny (calls)")
    rows = page.get_by_role("table", name="Decisions per data plane").get_by_role("row")
    expect(rows.filter(has_text="orders orders-")).to_contain_text("auth.inbound")
    assert set(stage.traffic[0].statuses) == {200}  # nothing denied yet

    page.get_by_role("button", name="Enforce").click()
    page.locator("dialog.confirm").get_by_role("button", name="Enforce").click()
    expect(page.get_by_text("Applied as v2")).to_be_visible()
    expect(page.locator("#rejected strong")).not_to_have_text("0", timeout=20_000)
    assert set(stage.traffic[0].statuses) - {200}  # web's calls denied now

    # A breaker in shadow counts the calls it would turn away apart from its openings.
    breaker = {"service": "orders-svc", "name": "orders-errors", "threshold": 0.5}
    doc = {**stage.call("GET", f"{WS}/rules")["document"], "breakers": [breaker]}
    stage.call("POST", f"{WS}/rules", {"document": doc, "shadow": True})
    page.goto(stage.url + "/#/w/shop/governance/breakers/0")
    expect(page.locator("#would-reject")).to_have_text(re.compile(r"^Would reject \(calls\): \d+$"))
    expect(page.locator("#would-open")).to_have_text(
        re.compile(r"^Would have opened \(times\): \d+$")
    )
    expect(page.get_by_role("button", name="Enforce")).to_be_visible()
    page.close()
