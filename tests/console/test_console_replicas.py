"""The live charts' samples live in the store: a second control-plane process on the
same sqlite file serves the same samples, in its console too, and a restart keeps them."""

from __future__ import annotations

import sys

import httpx
from playwright.sync_api import Browser, expect
from tests.console.stage import PASSWORD, Stage, eventually
from tests.console.test_console_access import log_in

SAMPLES = "/api/v1/workspaces/shop/services/orders-svc/samples"


def replica(stage: Stage, name: str) -> str:
    """Another control-plane process with the stage's config (the same store file)."""
    argv = [sys.executable, "-m", "sofamesh.control", "-c", str(stage.tmp / "control.yaml")]
    return "http://" + str(stage.start(name, argv)["listen"])


def samples(url: str) -> list[dict[str, object]]:
    token = httpx.post(f"{url}/api/v1/login", json={"user": "admin", "password": PASSWORD})
    headers = {"authorization": f"Bearer {token.json()['token']}"}
    resp = httpx.get(url + SAMPLES, headers=headers)
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, object]] = resp.json()["samples"]
    return rows


def test_a_second_replica_and_a_restart_serve_the_same_samples(
    stage: Stage, browser: Browser
) -> None:
    first = stage.control()
    token = stage.workspace("shop")
    stage.sidecar("orders", "shop", token, provides="orders-svc")
    web = stage.sidecar("web", "shop", token)
    stage.drive(web["outbound[0]"], "orders-svc", rate=20)
    eventually(lambda: samples(first), what="samples on the first replica")

    second = replica(stage, "control-2")  # its data planes report to the first one
    seen = eventually(lambda: samples(second), what="the same samples on the second replica")
    assert seen[0]["rps"] and seen[0]["success_rate"] == 1.0
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, second, "admin", PASSWORD)
    page.goto(second + "/#/w/shop/services/orders-svc")
    expect(page.locator("svg.chart path.line").first).to_be_visible(timeout=20_000)

    for proc in stage.procs[:1] + stage.procs[-1:]:  # both control planes stop
        proc.terminate()
        proc.wait(10)
    before = [s["time"] for s in seen]
    kept = [s["time"] for s in samples(replica(stage, "control-3"))]
    assert set(before) <= set(kept), (before, kept)
    page.close()
