"""In a real browser: log in and out, the workspace switcher, what a viewer may not touch,
and a user of one workspace never seeing another."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect
from tests.console.stage import PASSWORD, Stage


def log_in(page: Page, url: str, user: str, password: str) -> None:
    page.goto(url + "/")
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#whoami")).to_contain_text(user)


def test_login_switcher_logout(stage: Stage, browser: Browser) -> None:
    stage.control()
    for ws in ("a", "b"):
        stage.workspace(ws)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(stage.url + "/")
    page.get_by_label("User").fill("admin")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong user or password")
    # By keyboard alone: type, Tab to the password, Enter submits.
    page.get_by_label("User").fill("")
    page.get_by_label("User").focus()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#whoami")).to_contain_text("admin")
    switcher = page.get_by_label("Workspace")
    expect(switcher.locator("option")).to_have_text(["a", "b"])
    switcher.select_option("b")
    expect(page).to_have_url(stage.url + "/#/w/b/overview")
    expect(page.get_by_role("heading", name="Workspace b")).to_be_visible()
    token = page.evaluate("sessionStorage.getItem('sofamesh.token')")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.goto(stage.url + "/#/w/b/services")  # no token any more: the login page again
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    with stage.client(token) as c:
        assert c.get("/api/v1/whoami").status_code == 401  # revoked, not just forgotten
    page.close()


def test_an_admin_manages_workspaces_users_roles_and_tokens(stage: Stage, browser: Browser) -> None:
    stage.control()
    stage.workspace("a")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, stage.url, "admin", PASSWORD)
    page.get_by_role("link", name="Access").click()
    page.get_by_label("Workspace name").fill("c")
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_text("Workspace c created")).to_be_visible()
    page.get_by_label("User name").fill("ann")
    page.get_by_label("Password").fill("ann-password")
    page.get_by_label("Role", exact=True).nth(2).select_option("editor")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("table", name="Members")).to_contain_text("editor")
    page.locator("#m-user").fill("ann")
    page.locator("#m-role").select_option("owner")
    page.get_by_role("button", name="Set role").click()
    expect(page.get_by_role("table", name="Members")).to_contain_text("owner")
    page.locator("#t-name").fill("orders-sidecars")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").inner_text()
    with stage.client(secret) as c:  # a data-plane token: it may report (a bad report here)
        assert c.post("/api/v1/workspaces/a/dataplanes", json={}).status_code == 400
    page.get_by_role("button", name="Revoke orders-sidecars").click()
    page.locator("dialog.confirm").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("table", name="Tokens")).to_contain_text("revoked")
    with stage.client(secret) as c:
        assert c.post("/api/v1/workspaces/a/dataplanes", json={}).status_code == 401
    page.close()


def test_a_viewer_sees_no_edit_control_and_another_workspace_stays_hidden(
    stage: Stage, browser: Browser
) -> None:
    stage.control()
    token = stage.workspace("a")
    stage.workspace("b")
    stage.call(
        "POST",
        "/api/v1/workspaces/a/rules",
        {"document": {"rate_limits": [{"name": "q", "service": "s", "count": 5}]}},
    )
    stage.call("POST", "/api/v1/workspaces/a/rules", {"document": {}, "message": "empty"})
    stage.call("POST", "/api/v1/workspaces/b/rules", {"document": {}, "message": "b only"})
    stage.user("vic", "vic-password", "viewer", "a")
    stage.sidecar("orders", "a", token, provides="orders-svc")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, stage.url, "vic", "vic-password")
    expect(page.locator("#whoami")).to_contain_text("viewer")
    expect(page.get_by_label("Workspace").locator("option")).to_have_text(["a"])
    expect(page.get_by_role("link", name="Access")).to_have_count(0)

    page.goto(stage.url + "/#/w/a/sidecars")
    expect(page.get_by_role("link", name="orders")).to_be_visible()
    expect(page.get_by_role("button", name="Mark failed")).to_have_count(0)
    expect(page.get_by_role("button", name="Drain")).to_have_count(0)
    # At a phone width the inventory is stacked cards: nothing runs off the side.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("link", name="orders")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(stage.url + "/#/w/a/history")
    expect(page.get_by_role("cell", name="v2", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Diff v1 to v2")).to_be_visible()
    expect(page.get_by_role("button", name="Roll back to v1")).to_have_count(0)
    page.goto(stage.url + "/#/w/a/governance/rate_limits/0")
    expect(page.get_by_label("Service *")).to_be_disabled()
    expect(page.get_by_role("button", name="Review and apply")).to_have_count(0)
    page.goto(stage.url + "/#/w/a/governance/rate_limits")
    expect(page.get_by_role("link", name="New rate limits rule")).to_have_count(0)
    page.goto(stage.url + "/#/w/a/yaml")
    expect(page.get_by_label("YAML")).to_have_attribute("readonly", "")

    # The API refuses the viewer's edits anyway, with the token the page holds.
    status = page.evaluate(
        """async () => (await fetch('/api/v1/workspaces/a/rules', {method: 'POST',
             headers: {authorization: 'Bearer ' + sessionStorage.getItem('sofamesh.token'),
                       'content-type': 'application/json'},
             body: JSON.stringify({document: {}})})).status"""
    )
    assert status == 403

    # Workspace b: not in the switcher, and a link to it lands back in a.
    page.goto(stage.url + "/#/w/b/history")
    expect(page).to_have_url(stage.url + "/#/w/a/overview")
    expect(page.get_by_text("b only")).to_have_count(0)
    page.close()
