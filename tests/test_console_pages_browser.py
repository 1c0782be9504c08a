"""Every console page, for each HQ role, at both sizes the console is built for (desktop 1366x900, tablet
1024x768), in Debian's Chromium: it opens (200) with its h1, shows no console error, and axe-core finds
nothing serious or critical.

The page list is data: each role's menu (`console.nav.pages_for`, what the navigation shows him), plus
the pages those menu pages link to below themselves (one of each kind: a store, a member, a user…),
plus a few views of a page behind a query (SEARCHES). A page added to the navigation later is covered
without touching this test. The Members page is also used through its forms in the browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import console_support
import pytest
from console_support import DEMO_HQ, DESKTOP, SCREENSHOTS, TABLET, axe_problems, desk, desk_login
from sync_support import HqServer

from hq_sync.server.console.nav import pages_for
from tests.ui_support import save_screenshot

VIEWPORTS = {"desktop": DESKTOP, "tablet": TABLET}
# Views behind a query that the menu's links do not reach: (menu key, path).
SEARCHES = (("members", "/hq/ui/members?q=8000"),)
SKIP = re.compile(r"/events$|/export|[./]csv$|/lang/|/logout$")  # streams, downloads, actions (path only)
MAX_BELOW = 4  # linked pages of different kinds below one menu page
browser = console_support.browser  # fixtures shared by the console tests
hq_server = console_support.hq_server


def _shape(path: str) -> str:
    """A linked page's kind: its path with the last segment (an id) left out."""
    return path.split("?", 1)[0].rsplit("/", 1)[0]


def below(page: Any, prefix: str) -> list[str]:
    """Links on the page on screen to pages under `prefix`, one per kind."""
    hrefs = page.eval_on_selector_all("main a[href]", "els => els.map(e => e.getAttribute('href'))")
    kinds: dict[str, str] = {}
    for href in hrefs:
        if href.startswith(prefix + "/") and not SKIP.search(href.split("?", 1)[0]):
            kinds.setdefault(_shape(href), href)
    return list(kinds.values())[:MAX_BELOW]


@pytest.fixture(scope="module")
def activity(hq_server: HqServer) -> Iterator[None]:
    """A manual adjustment, so the member page shows its history tables too."""
    from console_support import console_login, post_form

    admin = console_login(hq_server, "hq")
    page = admin.get("/hq/ui/members/M000001").text
    adj = re.search(r'name="adjustment_id" value="([^"]+)"', page)
    assert adj
    done = post_form(admin, "/hq/ui/members/M000001", "/hq/ui/members/M000001/adjust",
                     {"adjustment_id": adj.group(1), "ledger": "points", "direction": "add", "amount": "50",
                      "reason": "welcome back"})
    assert done.status_code == 303
    yield


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("username", list(DEMO_HQ))
def test_every_console_page_opens_clean_for_each_role(browser: Any, hq_server: HqServer, activity: None,
                                                      username: str, viewport: str) -> None:
    role = DEMO_HQ[username][1]
    menu = pages_for(role)
    assert menu, f"{role} has no console page"
    found = desk(browser, hq_server.url, VIEWPORTS[viewport])
    try:
        desk_login(found, username)
        visited: list[str] = []
        problems: list[str] = []

        def check(path: str) -> None:
            status = found.goto(path)
            visited.append(path)
            if status != 200:
                problems.append(f"{path}: HTTP {status}")
                return
            if not found.h1():
                problems.append(f"{path}: no h1")
            width = found.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            if width > 1:
                problems.append(f"{path}: the page scrolls sideways by {width}px")
            problems.extend(f"{path}: {p}" for p in axe_problems(found.page))
            if found.errors:
                problems.extend(f"{path}: {e}" for e in found.errors)
                found.errors.clear()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^a-zA-Z0-9]+", "_", path.removeprefix("/hq/ui/")).strip("_") or "home"
            save_screenshot(found.page, SCREENSHOTS / f"{username}-{viewport}-{name}.png")

        kinds: set[str] = set()
        for item in menu:
            for start in [item.path, *(path for key, path in SEARCHES if key == item.key)]:
                check(start)
                for path in below(found.page, item.path):
                    if _shape(path) not in kinds:
                        kinds.add(_shape(path))
                        check(path)
        assert [item.path for item in menu] == [p for p in visited if p in {i.path for i in menu}]
        assert not problems, "\n".join(problems)
    finally:
        found.close()


def test_the_members_page_in_the_browser_search_open_and_adjust(browser: Any, hq_server: HqServer) -> None:
    """An HQ admin finds a member by the phone's last four digits, opens him, books an adjustment."""
    found = desk(browser, hq_server.url, DESKTOP, lang="en")
    try:
        desk_login(found, "hq")
        assert found.goto("/hq/ui/members") == 200
        found.page.fill("#member-q", "8000")
        assert found.click_to(found.page.locator("main form[role=search] button")) == 200
        assert "13800138000" in found.page.locator("main table").inner_text()
        assert found.click_to(found.page.get_by_role("link", name="M000001")) == 200
        before = hq_server.query("SELECT balance FROM hq_members WHERE member_id = 'M000001'")[0][0]
        found.page.select_option("#adjust-ledger", "value")
        found.page.select_option("#adjust-direction", "add")
        found.page.fill("#adjust-amount", "8.80")
        found.page.fill("#adjust-reason", "browser goodwill")
        assert found.click_to(found.page.get_by_role("button", name="Book adjustment")) == 200
        assert "Adjustment booked." in found.page.locator("main").inner_text()
        assert "browser goodwill" in found.page.locator("main").inner_text()
        assert hq_server.query("SELECT balance FROM hq_members WHERE member_id = 'M000001'")[0][0] == before + 880
        assert axe_problems(found.page) == []
        assert found.errors == []
    finally:
        found.close()
