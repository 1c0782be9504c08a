"""Driving the tablet UI over plain HTTP (forms and cookies, as a browser without script would)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import DEMO_SECRETS, Hub

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def ui_login(hub: Hub, username: str, *, password: str | None = None, pin: str | None = None,
             till_id: str = "T1", lang: str | None = None) -> httpx.Client:
    """A cookie session from the login form; demo users need only their name."""
    if password is None and pin is None:
        secret = DEMO_SECRETS[username]
        password, pin = secret.get("password"), secret.get("pin")
    client = httpx.Client(base_url=hub.base_url, timeout=30, follow_redirects=False)
    if lang:
        client.cookies.set("backroom_lang", lang)
    page = client.get("/ui/login")
    nonce = _NONCE.search(page.text)
    assert nonce, page.text
    form: dict[str, str] = {"nonce": nonce.group(1), "next": "/ui", "username": username}
    if pin is not None and password is None:
        form |= {"mode": "pin", "pin": pin, "till_id": till_id}
    else:
        form |= {"mode": "password", "password": password or ""}
    resp = client.post("/ui/login", data=form)
    assert resp.status_code == 303 and "backroom_session" in resp.headers.get("set-cookie", ""), resp.text
    return client


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "page has no form with a CSRF token"
    return found.group(1)


def post_form(client: httpx.Client, page_path: str, action: str, data: dict[str, Any]) -> httpx.Response:
    """Open `page_path`, take its CSRF token, and post `data` to `action` (no redirect following)."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={"csrf": csrf_of(page.text), **data})


def save_screenshot(page: Any, path: Path) -> None:
    """A full-page screenshot of a Playwright page, kept as a test artifact. Headless Chromium now and then
    refuses a capture under load ("Protocol error (Page.captureScreenshot): Unable to capture screenshot", an
    upstream Chromium fault, puppeteer issue 5341): it is taken again once, a moment later. A second refusal
    fails the test."""
    from playwright.sync_api import Error

    try:
        page.screenshot(path=str(path), full_page=True)
    except Error as exc:
        if "Unable to capture screenshot" not in str(exc):
            raise
        time.sleep(0.5)
        page.screenshot(path=str(path), full_page=True)
