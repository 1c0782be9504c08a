"""The tablet's dashboard: the day's figures from real sales, in both languages, live over SSE,
and only for the roles that may read reports."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx

from tests.conftest import Hub
from tests.ui_support import ui_login


def sell(till: httpx.Client, lines: list[dict[str, Any]], member_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"lines": lines}
    if member_id:
        body["member_id"] = member_id
    total = till.post("/api/v1/quote", json=body).json()["total"]
    resp = till.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1", **body,
                                            "tenders": [{"method": "cash", "amount": total}]})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_dashboard_shows_the_days_sales_in_chinese_by_default(fresh_hub: Hub) -> None:
    till = fresh_hub.login("cashier")
    first = sell(till, [{"sku": "SKU00027", "qty": 2}])
    second = sell(till, [{"sku": "SKU00027", "qty": 1}], member_id="M000001")
    tablet = ui_login(fresh_hub, "manager")
    page = tablet.get("/ui/dashboard")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="zh-CN">' in html
    assert "<h1>经营概览</h1>" in html
    total = first["total"] + second["total"]
    assert f"¥{total // 100:,}.{total % 100:02d}" in html  # the day's sales
    assert '<span class="label">客单数</span><span class="value">2</span>' in html
    assert '<span class="label">会员占比</span><span class="value">50.0%</span>' in html
    assert '<svg class="chart"' in html and "分时销售" in html
    assert 'data-live="/ui/dashboard/events"' in html
    assert "server-timing" in page.headers and page.headers["server-timing"].startswith("app;dur=")


def test_dashboard_in_english_and_for_a_past_day(fresh_hub: Hub) -> None:
    tablet = ui_login(fresh_hub, "manager", lang="en")
    html = tablet.get("/ui/dashboard", params={"day": "2020-01-06"}).text
    assert '<html lang="en">' in html and "<h1>Dashboard</h1>" in html
    assert "No sales on this day yet." in html
    assert "data-live" not in html  # a past day does not change
    assert tablet.get("/ui/dashboard", params={"day": "not-a-day"}).status_code == 200  # falls back to today


def test_cashier_and_guide_may_not_open_the_dashboard(hub: Hub) -> None:
    for user in ("cashier", "guide"):
        tablet = ui_login(hub, user)
        resp = tablet.get("/ui/dashboard")
        assert resp.status_code == 403
        assert "无权操作" in resp.text
        # the menu offers only what the role may open
        assert 'href="/ui/dashboard"' not in resp.text and 'href="/ui/stock"' in resp.text


def test_no_session_redirects_to_login(hub: Hub) -> None:
    resp = httpx.get(f"{hub.base_url}/ui/dashboard", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/ui/login?next=/ui/dashboard"
    forged = httpx.get(f"{hub.base_url}/ui/dashboard", cookies={"backroom_session": "abc.def"}, follow_redirects=False)
    assert forged.status_code == 303


def test_a_sale_reaches_an_open_dashboard_over_server_sent_events(fresh_hub: Hub) -> None:
    tablet = ui_login(fresh_hub, "manager")
    till = fresh_hub.login("cashier")
    received: list[dict[str, str]] = []
    live = threading.Event()

    def listen() -> None:
        with tablet.stream("GET", "/ui/dashboard/events", timeout=20) as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith(": live"):  # the stream has taken the state it sends changes from
                    live.set()
                elif line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "fragments":
                    received.append(json.loads(line.split(":", 1)[1]))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    # A sale before the stream took its starting state would be part of that state, not a change
    assert live.wait(20), "the stream never said it was live"
    sale = sell(till, [{"sku": "SKU00027", "qty": 3}])
    listener.join(timeout=20)
    assert received, "no live update arrived"
    fragments = received[0]
    assert set(fragments) == {"dash-figures", "dash-hourly", "dash-categories", "dash-top"}
    assert f"¥{sale['total'] // 100:,}.{sale['total'] % 100:02d}" in fragments["dash-figures"]
    assert fragments["dash-figures"].startswith('<div class="figures" id="dash-figures">')


def test_the_box_address_alone_leads_to_the_tablet(hub: Hub) -> None:
    resp = httpx.get(f"{hub.base_url}/", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/login"
    tablet = ui_login(hub, "cashier")
    assert tablet.get("/").headers["location"] == "/ui/stock"  # a cashier's first page
    assert ui_login(hub, "manager").get("/ui").headers["location"] == "/ui/dashboard"


def test_an_open_live_stream_ends_when_its_users_logins_are_ended(fresh_hub: Hub) -> None:
    tablet = ui_login(fresh_hub, "manager")
    region = fresh_hub.login("region")
    ended = threading.Event()

    def listen() -> None:
        with tablet.stream("GET", "/ui/dashboard/events", timeout=30) as stream:
            for _ in stream.iter_lines():
                pass
        ended.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1)
    assert not ended.is_set()
    manager_id = fresh_hub.query("SELECT user_id FROM users WHERE username = 'manager'")[0][0]
    assert region.post(f"/api/v1/users/{manager_id}/deactivate").status_code == 200
    assert ended.wait(10), "the stream outlived the login it was opened with"
