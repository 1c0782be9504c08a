"""Driving the HQ console (`/hq/ui`): a real `backroom hq serve --demo`, plain-HTTP sessions through the
login form (as a browser without script), and a Chromium harness (Playwright, Debian's /usr/bin/chromium)
with axe-core, at the two sizes the console is built for. Shared by every console test module.

    from console_support import DEMO_HQ, console_login, post_form, desk, desk_login, axe_problems
    # fixtures (import them into the test module): hq_server, browser
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sync_support import HqServer

from tests.ui_support import csrf_of

# login -> (password, role); the demo HQ's logins (README, docs/hq-console.md)
DEMO_HQ: dict[str, tuple[str, str]] = {
    "hq": ("hq-demo", "hq_admin"),
    "region-east": ("region-demo", "region_manager"),
    "operator": ("operator-demo", "hq_operator"),
    "finance": ("finance-demo", "finance"),
    "auditor": ("auditor-demo", "auditor"),
}
DESKTOP = {"width": 1366, "height": 900}
TABLET = {"width": 1024, "height": 768}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).parent / "artifacts" / "screenshots" / "hq-console"
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')
SESSION = "backroom_hq_session"


# -- a demo HQ -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hq_server() -> Iterator[HqServer]:
    """`backroom hq serve --demo` on a fresh SQLite file, for the module."""
    root = Path(tempfile.mkdtemp(prefix="backroom-console-"))
    server = HqServer(str(root / "hq.sqlite3"), root).start()
    try:
        yield server
    finally:
        server.stop()


def api_token(hq: HqServer, username: str, password: str | None = None) -> str:
    r = httpx.post(hq.url + "/hq/v1/auth/login", json={"username": username,
                                                       "password": password or DEMO_HQ[username][0]}, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def api(hq: HqServer, username: str, password: str | None = None) -> httpx.Client:
    """The admin API as `username` (bearer token)."""
    return httpx.Client(base_url=hq.url, headers={"Authorization": f"Bearer {api_token(hq, username, password)}"},
                        timeout=10)


# -- plain HTTP ----------------------------------------------------------------------------------------------------

def console_login(hq: HqServer, username: str, password: str | None = None, lang: str | None = None) -> httpx.Client:
    """A cookie session from the console's login form; demo users need only their name."""
    client = httpx.Client(base_url=hq.url, timeout=30, follow_redirects=False)
    if lang:
        client.cookies.set("backroom_lang", lang)
    page = client.get("/hq/ui/login")
    nonce = _NONCE.search(page.text)
    assert nonce, page.text
    resp = client.post("/hq/ui/login", data={"nonce": nonce.group(1), "next": "/hq/ui", "username": username,
                                             "password": password or DEMO_HQ[username][0]})
    assert resp.status_code == 303 and SESSION in resp.headers.get("set-cookie", ""), resp.text
    return client


def post_form(client: httpx.Client, page_path: str, action: str, data: dict[str, Any]) -> httpx.Response:
    """Open `page_path`, take its CSRF token, and post `data` to `action` (no redirect following)."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={"csrf": csrf_of(page.text), **data})


def audit_count(hq: HqServer) -> int:
    return int(hq.query("SELECT count(*) FROM hq_audit")[0][0])


# -- a browser -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "no /usr/bin/chromium: `make test` installs Debian's chromium package"
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@dataclass
class Desk:
    """One browser context (a fresh desk) with the console errors its pages reported."""

    context: Any
    page: Any
    base_url: str
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> int:
        response = self.page.goto(self.base_url + path)
        assert response is not None
        return int(response.status)

    def h1(self) -> str:
        return str(self.page.locator("h1").inner_text().strip())

    def click_to(self, control: Any) -> int:
        """Click a link or submit button and wait for the page it leads to; its HTTP status."""
        with self.page.expect_navigation() as navigation:
            control.click()
        response = navigation.value
        return int(response.status) if response is not None else 0

    def close(self) -> None:
        self.context.close()


def desk(browser: Any, base_url: str, viewport: dict[str, int] = DESKTOP, lang: str | None = None) -> Desk:
    context = browser.new_context(viewport=viewport, locale="zh-CN", has_touch=viewport == TABLET)
    if lang:
        context.add_cookies([{"name": "backroom_lang", "value": lang, "url": base_url}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    found = Desk(context, page, base_url)
    page.on("console", lambda msg: found.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: found.errors.append(f"pageerror: {exc}"))
    page.on("dialog", lambda dialog: dialog.accept())
    return found


def desk_login(found: Desk, username: str, password: str | None = None) -> None:
    """Through the login form; lands on the first page of the role's menu."""
    assert found.goto("/hq/ui/login") == 200
    found.page.fill("#hq-user", username)
    found.page.fill("#hq-pass", password or DEMO_HQ[username][0])
    assert found.click_to(found.page.locator("main form button[type=submit]")) == 200
    assert "/hq/ui/login" not in found.page.url, found.page.locator("main").inner_text()


def axe_problems(page: Any) -> list[str]:
    """Serious and critical axe-core findings on the page on screen."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"axe {v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
