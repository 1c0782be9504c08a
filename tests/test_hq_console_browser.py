"""The HQ console in a real browser: Debian's Chromium driven by Playwright, against a real demo HQ.

Each demo role logs in through the form, at a desktop (1366x900) and a tablet (1024x768) size, and
opens every page of its menu plus the detail pages it may see: each answers 200 with one h1, in
Simplified Chinese, without console errors, without serious or critical axe-core findings, without
making the page scroll sideways; each is saved as a screenshot (tests/artifacts/screenshots/hq-console).
A region manager's forged URL to another region's store gets the 403 page. The dashboard follows a
real paired hub's sale live (SSE) without a reload.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import console_support
import pytest
from console_support import DEMO_HQ, DESKTOP, SCREENSHOTS, TABLET, axe_problems, desk, desk_login
from playwright.sync_api import expect
from sync_support import FAST, HqServer, SyncHub, sell, wait_until

from hq_sync.server.console.nav import pages_for
from tests.ui_support import save_screenshot

browser = console_support.browser
hq_server = console_support.hq_server
DETAILS = {"/hq/ui/stores": ["/hq/ui/stores/demo-001"], "/hq/ui/users": ["/hq/ui/users/hq"]}


def _overflow(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))


@pytest.mark.parametrize("size", ["desktop", "tablet"])
@pytest.mark.parametrize("username", list(DEMO_HQ))
def test_every_page_of_each_roles_menu_opens_cleanly(browser: Any, hq_server: HqServer, username: str,
                                                      size: str) -> None:
    found = desk(browser, hq_server.url, DESKTOP if size == "desktop" else TABLET)
    problems: dict[str, list[str]] = {}
    try:
        desk_login(found, username)
        want = [item.path for item in pages_for(DEMO_HQ[username][1])]
        assert found.page.url.endswith(want[0])
        links = [a.get_attribute("href") for a in found.page.locator("nav.menu a").all()]
        assert links == want
        folder = SCREENSHOTS / f"{username}-{size}"
        folder.mkdir(parents=True, exist_ok=True)
        for path in [p for href in want for p in (href, *DETAILS.get(href, []))]:
            before = len(found.errors)
            status = found.goto(path)
            save_screenshot(found.page, folder / f"{path.strip('/').replace('/', '_')}.png")
            here: list[str] = [] if status == 200 else [f"HTTP {status}"]
            if found.page.locator("html").get_attribute("lang") != "zh-CN":
                here.append("not zh-CN")
            if found.page.locator("h1").count() != 1 or not found.h1():
                here.append("a page has one h1, with text")
            if _overflow(found.page) > 0:
                here.append(f"the page scrolls sideways by {_overflow(found.page)} px")
            here += axe_problems(found.page)
            here += found.errors[before:]
            if here:
                problems[path] = here
    finally:
        found.close()
    assert problems == {}, json.dumps(problems, indent=1, ensure_ascii=False)


def test_the_login_page_passes_axe_and_switches_to_english(browser: Any, hq_server: HqServer) -> None:
    found = desk(browser, hq_server.url, TABLET)
    try:
        assert found.goto("/") == 200 and found.page.url.endswith("/hq/ui/login")
        assert found.h1() == "登录"
        assert axe_problems(found.page) == []
        assert found.click_to(found.page.locator(".langs a[lang=en]")) == 200
        assert found.h1() == "Log in"
        desk_login(found, "hq")
        assert [a.inner_text().strip() for a in found.page.locator("nav.menu a").all()] == [
            "Chain dashboard", "Stores", "Catalog and prices", "Promotions", "Members", "Transfers", "Reports",
            "Statements", "Audit log", "HQ users"]
        assert found.errors == []
    finally:
        found.close()


def test_a_region_manager_gets_the_403_page_for_another_regions_store(browser: Any, hq_server: HqServer) -> None:
    found = desk(browser, hq_server.url)
    try:
        desk_login(found, "region-east")
        assert "demo-002" not in found.page.locator("main").inner_text()
        assert found.goto("/hq/ui/stores/demo-002") == 403
        assert "演示二店" not in found.page.content()
        assert found.goto("/hq/ui/users") == 403
        assert axe_problems(found.page) == []
        assert [e for e in found.errors if "403" not in e] == []  # the browser logs the 403 itself; nothing else
    finally:
        found.close()


def test_an_admin_edits_a_store_profile_in_the_form(browser: Any, hq_server: HqServer) -> None:
    found = desk(browser, hq_server.url, lang="en")
    try:
        desk_login(found, "hq")
        assert found.goto("/hq/ui/stores/demo-001") == 200
        found.page.fill("#p-address", "上海市黄浦区南京东路 100 号")
        assert found.click_to(found.page.get_by_role("button", name="Save")) == 200
        assert found.page.locator(".flash.notice").inner_text() == "The store's profile is saved."
        assert hq_server.query("SELECT address FROM hq_stores WHERE store_id = 'demo-001'") == [
            ("上海市黄浦区南京东路 100 号",)]
        assert found.goto("/hq/ui/audit?target=store:demo-001") == 200
        assert "南京东路" in found.page.locator("table").inner_text()
        assert found.errors == []
    finally:
        found.close()


def test_the_dashboard_follows_a_paired_stores_sale_live(browser: Any) -> None:
    root = Path(tempfile.mkdtemp(prefix="backroom-console-live-"))
    hq = HqServer(str(root / "hq.sqlite3"), root).start()
    hub = SyncHub(root, hq.url, store="demo-001", **FAST)
    try:
        hub.start()
        wait_until(hub.paired, 30, what="the hub pairs")
        found = desk(browser, hq.url, lang="en")
        try:
            desk_login(found, "region-east")
            assert "¥0.00" in found.page.locator("#dash-figures").inner_text()
            found.page.locator(".live-dot.on").wait_for()  # the event stream is open (the page's CSP forbids eval)
            assert sell(hub.till(), 3).status_code == 201
            expect(found.page.locator("#dash-figures")).not_to_contain_text("¥0.00", timeout=20_000)
            ranking = found.page.locator("#dash-stores").inner_text()
            assert "Online" in ranking and "demo-001" in ranking
            assert found.errors == []
        finally:
            found.close()
    finally:
        hub.stop()
        hq.stop()
