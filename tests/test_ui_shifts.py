"""The Shifts view of the tablet's end-of-day page (交接班) over plain HTTP: a cashier opens a shift at his
till, records a pay-out and closes it with the counted cash; a manager records a safe drop; the table
shows the drawer in Chinese and in English; a double tap books once; a cashier cannot drop.

Worked by hand: float ¥300.00; a sale of 2 x blueberries 19.90 = 39.80 paid ¥50.00 cash (change 10.20);
pay-out ¥15.00; safe drop ¥100.00. Expected 300 + 50 - 10.20 - 15 - 100 = ¥224.80; counted ¥224.00: short 0.80.
"""

from __future__ import annotations

import re
import uuid

from tests.conftest import Hub
from tests.test_eod import BLUEBERRIES, sell
from tests.test_ui_eod import flash_after
from tests.ui_support import post_form, ui_login


def _form_id(html: str, action: str) -> str:
    found = re.search(rf'<form method="post" action="{re.escape(action)}"[^>]*>.*?name="form_id" value="([^"]+)"',
                      html, re.S)
    assert found, html
    return found.group(1)


def _shift_id(html: str) -> str:
    found = re.search(r'name="shift_id" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_a_cashier_opens_pays_out_and_closes_a_shift_on_the_tablet(fresh_hub: Hub) -> None:
    till = ui_login(fresh_hub, "cashier")  # PIN login at T1
    page = till.get("/ui/eod").text
    assert "<h2 id=\"eod-shifts\">交接班</h2>" in page and "当日没有班次。" in page
    form_id = _form_id(page, "/ui/eod/shifts")
    opened = post_form(till, "/ui/eod", "/ui/eod/shifts", {"form_id": form_id, "opening_float": "300"})
    assert flash_after(till, opened) == "notice: 收银台 T1 已开班，备用金 ¥300.00。"
    twice = post_form(till, "/ui/eod", "/ui/eod/shifts", {"form_id": form_id, "opening_float": "300"})
    assert flash_after(till, twice) == "notice: 收银台 T1 已开班，备用金 ¥300.00。"  # a double tap: one shift
    assert fresh_hub.query("SELECT till_id, opening_float FROM shifts") == [("T1", 30000)]
    other = post_form(till, "/ui/eod", "/ui/eod/shifts", {"form_id": str(uuid.uuid4())})
    assert flash_after(till, other) == "error: 收银台 T1 已有未交班的班次，请先交班。"

    sell(fresh_hub.login("cashier"), "T1", [(BLUEBERRIES, 2)], [{"method": "cash", "amount": 5000}])
    page = till.get("/ui/eod").text
    shift_id = _shift_id(page)
    paid = post_form(till, "/ui/eod", "/ui/eod/shifts/payouts", {
        "form_id": str(uuid.uuid4()), "shift_id": shift_id, "amount": "15", "reason": "快递费"})
    assert flash_after(till, paid) == "notice: 已记录支出 ¥15.00。"
    assert "/ui/eod/shifts/drops" not in page  # a cashier has no drop form
    refused = till.post("/ui/eod/shifts/drops", data={"shift_id": shift_id, "amount": "1", "reason": "x"})
    assert refused.status_code in (303, 403)
    bad = post_form(till, "/ui/eod", "/ui/eod/shifts/payouts", {
        "form_id": str(uuid.uuid4()), "shift_id": shift_id, "amount": "-3", "reason": "x"})
    assert flash_after(till, bad) == "error: 请以元为单位填写金额，大于 0，最多两位小数。"

    manager = ui_login(fresh_hub, "manager", lang="en")
    html = manager.get("/ui/eod").text
    assert "/ui/eod/shifts/drops" in html
    dropped = post_form(manager, "/ui/eod", "/ui/eod/shifts/drops", {
        "form_id": str(uuid.uuid4()), "shift_id": shift_id, "amount": "100", "reason": "midday"})
    assert flash_after(manager, dropped) == "notice: Safe drop of CN¥100.00 recorded."
    too_much = post_form(manager, "/ui/eod", "/ui/eod/shifts/drops", {
        "form_id": str(uuid.uuid4()), "shift_id": shift_id, "amount": "500", "reason": "midday"})
    assert flash_after(manager, too_much) == "error: The drawer should hold only CN¥224.80."

    closed = post_form(till, "/ui/eod", "/ui/eod/shifts/close", {"shift_id": shift_id, "counted": "224"})
    assert flash_after(till, closed) == "notice: 收银台 T1 已交班：实点 ¥224.00，应有 ¥224.80：短款 ¥0.80。"
    assert fresh_hub.query("SELECT counted, expected, variance FROM shifts") == [(22400, 22480, -80)]
    html = manager.get("/ui/eod").text
    row = re.search(rf'<tr data-shift="{shift_id}">(.*?)</tr>', html, re.S)
    assert row, html
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert [cells[0], cells[1], *cells[4:]] == ["T1", "李娜（收银员）", "1", "CN¥39.80", "CN¥300.00", "CN¥15.00",
                                               "CN¥100.00", "<strong>CN¥224.80</strong>", "CN¥224.00",
                                               "Short by CN¥0.80"]
    # The day's X report takes the pay-out and the drop out of T1's drawer: 500 + 50 - 10.20 - 15 - 100.
    assert '<th scope="row">Safe drops</th><td class="num">CN¥100.00</td>' in html
    assert "<strong>CN¥424.80</strong>" in html
