"""The end-of-day page (交班 / 日结) over plain HTTP: the X report's figures after real sales, a cash
count by notes and coins with its variance in words, a cashier limited to his till, closing the day
once with a Z report, the Z history, and bad form values refused without a write.

The day of trade is `trade` from tests/test_eod.py (figures worked out there by hand):
  T1: net 69.70, tax 5.76, cash 50.00 + card 29.90, change 10.20, refund 19.90 cash, top-up 100.00 cash,
      expected cash 500.00 + 50.00 - 10.20 - 19.90 + 100.00 = 619.90
  T2: net 39.80 by Alipay, expected cash 500.00 (the float);  store: net 109.50, tax 9.05, expected 1,119.90
"""

from __future__ import annotations

import re
import uuid

import httpx

from tests.conftest import Hub
from tests.test_eod import BLUEBERRIES, sell, trade
from tests.ui_support import csrf_of, post_form, ui_login


def flash_after(client: httpx.Client, resp: httpx.Response) -> str:
    """Follow a form's 303 and return the notice or error the page shows."""
    assert resp.status_code == 303, resp.text
    page = client.get(resp.headers["location"])
    found = re.search(r'<p class="flash (notice|error)"[^>]*>([^<]*)</p>', page.text)
    assert found, page.text
    return f"{found.group(1)}: {found.group(2)}"


def test_the_x_report_shows_the_days_figures_per_till_and_for_the_store(fresh_hub: Hub) -> None:
    trade(fresh_hub)
    tablet = ui_login(fresh_hub, "manager")
    page = tablet.get("/ui/eod")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="zh-CN">' in html and "<h1>日结</h1>" in html
    assert '<th scope="col" class="num">门店</th><th scope="col" class="num">收银台 T1</th>' \
           '<th scope="col" class="num">收银台 T2</th>' in html
    assert '<th scope="row">净销售额</th><td class="num">¥109.50</td><td class="num">¥69.70</td>' \
           '<td class="num">¥39.80</td>' in html
    assert '<th scope="row">税额</th><td class="num">¥9.05</td><td class="num">¥5.76</td>' in html
    assert '<th scope="row">支付宝</th><td class="num">¥39.80</td><td class="num">¥0.00</td>' \
           '<td class="num">¥39.80</td>' in html
    assert '<th scope="row">找零</th><td class="num">¥10.20</td><td class="num">¥10.20</td>' in html
    assert "<strong>¥1,119.90</strong>" in html and "<strong>¥619.90</strong>" in html
    assert '<svg class="chart shares"' in html and "各支付方式占比" in html
    # Nothing counted yet: both tills are anomalies, and the close confirm names them.
    assert html.count("现金未清点") == 3  # the two tills' rows and the summary by kind
    assert "<li><strong>现金未清点</strong>: 2</li>" in html
    assert "收银台 T1 当日有销售，但现金尚未清点（应有 ¥619.90）。" in html
    assert 'data-confirm="确定为 ' in html and "此操作无法撤销。 未清点现金的收银台：T1, T2。" in html


def test_a_cash_count_by_notes_and_coins_tells_the_variance_in_words(fresh_hub: Hub) -> None:
    trade(fresh_hub)
    till = ui_login(fresh_hub, "cashier", lang="en")  # PIN login at T1
    count_id = str(uuid.uuid4())
    form = {"count_id": count_id, "counted": "", "d10000": "5", "d5000": "2", "d1000": "1", "d100": "4",
            "d50": "1", "d10": "2", "d500": ""}
    resp = post_form(till, "/ui/eod", "/ui/eod/cash-counts", form)
    assert flash_after(till, resp) == \
        "notice: Till T1 counted CN¥614.70, expected CN¥619.90: Short by CN¥5.20."
    again = post_form(till, "/ui/eod", "/ui/eod/cash-counts", form)  # a double tap books one count
    assert flash_after(till, again).startswith("notice: Till T1 counted CN¥614.70")
    assert fresh_hub.query("SELECT till_id, counted, expected, variance, denominations FROM cash_counts") == [
        ("T1", 61470, 61990, -520, '{"10":2,"100":4,"1000":1,"10000":5,"50":1,"5000":2}')]
    html = till.get("/ui/eod").text
    assert '<td class="num">CN¥614.70</td>' in html and "Short by CN¥5.20</span>" in html

    # A total that disagrees with the notes and coins is refused.
    wrong = post_form(till, "/ui/eod", "/ui/eod/cash-counts",
                      {"count_id": str(uuid.uuid4()), "counted": "700", "d10000": "5"})
    assert flash_after(till, wrong) == "error: Not done: the denominations add up to 50000, the count says 70000"
    manager = ui_login(fresh_hub, "manager", lang="en")
    over = post_form(manager, "/ui/eod", "/ui/eod/cash-counts",
                     {"count_id": str(uuid.uuid4()), "till_id": "T2", "counted": "501.5"})
    assert flash_after(manager, over) == "notice: Till T2 counted CN¥501.50, expected CN¥500.00: Over by CN¥1.50."
    assert fresh_hub.query("SELECT count(*) FROM cash_counts") == [(2,)]


def test_a_cashier_sees_only_his_till_and_may_not_close_the_day(fresh_hub: Hub) -> None:
    trade(fresh_hub)
    till = ui_login(fresh_hub, "cashier")
    page = till.get("/ui/eod")
    assert page.status_code == 200
    html = page.text
    assert "收银台 T1 交班报表（X 报表）" in html
    assert '<th scope="col" class="num">收银台 T1</th></tr>' in html  # one column: no store, no T2
    assert "门店" not in html and "收银台 T2" not in html and "¥1,119.90" not in html
    assert "您的收银台：T1" in html and 'name="till_id"' not in html
    assert '<label for="count-d10000">¥100 数量</label>' in html and '<label for="count-d50">¥0.5 数量</label>' in html
    assert "/ui/eod/close" not in html and "日结报表历史" not in html and "异常" not in html
    token = csrf_of(html)
    assert till.post("/ui/eod/close", data={"csrf": token}).status_code == 403
    assert till.post("/ui/eod/floats", data={"csrf": token, "till_id": "T1", "amount": "1"}).status_code == 403
    assert till.get("/ui/eod/z/1").status_code == 403
    # A count names no other till: the form's till is the login's.
    resp = till.post("/ui/eod/cash-counts", data={"csrf": token, "count_id": str(uuid.uuid4()), "till_id": "T2",
                                                  "counted": "619.90"})
    assert flash_after(till, resp) == "notice: 收银台 T1 清点 ¥619.90，应有 ¥619.90：相符。"
    assert fresh_hub.query("SELECT till_id FROM cash_counts") == [("T1",)]
    assert fresh_hub.query("SELECT count(*) FROM z_reports") == [(0,)]
    assert fresh_hub.query("SELECT count(*) FROM till_floats") == [(0,)]
    assert ui_login(fresh_hub, "guide").get("/ui/eod").status_code == 403


def test_the_day_closes_once_and_the_z_report_is_in_the_history(fresh_hub: Hub) -> None:
    trade(fresh_hub)
    tablet = ui_login(fresh_hub, "manager")
    floated = post_form(tablet, "/ui/eod", "/ui/eod/floats", {"till_id": "T2", "amount": "300"})
    assert flash_after(tablet, floated) == "notice: 收银台 T2 的备用金已设为 ¥300.00。"
    counted = post_form(tablet, "/ui/eod", "/ui/eod/cash-counts",
                        {"count_id": str(uuid.uuid4()), "till_id": "T1", "counted": "619.90"})
    assert flash_after(tablet, counted) == "notice: 收银台 T1 清点 ¥619.90，应有 ¥619.90：相符。"
    assert "未清点现金的收银台：T2。" in tablet.get("/ui/eod").text

    closed = post_form(tablet, "/ui/eod", "/ui/eod/close", {})
    assert flash_after(tablet, closed) == "notice: 已日结：Z 报表 1 号。"
    html = tablet.get("/ui/eod").text
    assert "已日结，Z 报表 1 号" in html and "张伟（店长）" in html
    assert 'action="/ui/eod/close"' not in html and 'action="/ui/eod/cash-counts"' not in html
    assert '<a href="/ui/eod/z/1">1 号</a>' in html  # the history
    assert "<strong>¥919.90</strong>" in html  # frozen: 619.90 + the float of 300.00

    again = tablet.post("/ui/eod/close", data={"csrf": csrf_of(html)})
    assert flash_after(tablet, again) == "error: 这一天已经日结，不能再录入或再次日结。"
    assert fresh_hub.query("SELECT z_no, net, cash_expected, cash_counted FROM z_reports") == [
        (1, 10950, 91990, 61990)]

    # a till that goes on selling after the close: the sale is in no Z, and the page says so
    late = sell(fresh_hub.login("cashier"), "T1", [(BLUEBERRIES, 1)], [{"method": "cash", "amount": 5000}])
    assert (f"日结之后，当天又记录了 1 笔销售（¥{late['total'] // 100}.{late['total'] % 100:02d}）和 0 笔退货"
            in tablet.get("/ui/eod").text)

    z = tablet.get("/ui/eod/z/1")
    assert z.status_code == 200
    assert "<h1>Z 报表 1 号</h1>" in z.text and '<td class="num">¥109.50</td>' in z.text
    assert "现金未清点" in z.text  # T2 was closed uncounted
    assert tablet.get("/ui/eod/z/2").status_code == 404


def test_bad_form_values_give_an_error_notice_and_write_nothing(fresh_hub: Hub) -> None:
    tablet = ui_login(fresh_hub, "manager", lang="en")
    for form, expected in (
        ({"till_id": "T1", "counted": "-5"}, "error: Enter the counted cash in yuan"),
        ({"till_id": "T1", "counted": "abc"}, "error: Enter the counted cash in yuan"),
        ({"till_id": "T1", "counted": "1e3"}, "error: Enter the counted cash in yuan"),
        ({"till_id": "T1", "d100": "-1"}, "error: Enter how many of each note or coin"),
        ({"till_id": "T1", "d500": "two"}, "error: Enter how many of each note or coin"),
        ({"till_id": "T1"}, "error: Enter the counted total, or how many"),
        ({"till_id": "", "counted": "10"}, "error: Choose the till"),
        ({"till_id": "T1", "counted": "10", "day": "2999-01-01"}, "error: Not done: 2999-01-01 has not begun"),
        ({"till_id": "T1", "counted": "10", "day": "garbage"}, "error: Not done: day must be a date"),
    ):
        resp = post_form(tablet, "/ui/eod", "/ui/eod/cash-counts", {"count_id": str(uuid.uuid4()), **form})
        assert flash_after(tablet, resp).startswith(expected), form
    for form, expected in (
        ({"till_id": "T1", "amount": "-1"}, "error: Enter the opening float in yuan"),
        ({"till_id": "T1", "amount": "lots"}, "error: Enter the opening float in yuan"),
        ({"till_id": "", "amount": "100"}, "error: Enter the till the float is for."),
    ):
        resp = post_form(tablet, "/ui/eod", "/ui/eod/floats", form)
        assert flash_after(tablet, resp).startswith(expected), form
    future = post_form(tablet, "/ui/eod", "/ui/eod/close", {"day": "2999-01-01"})
    assert flash_after(tablet, future).startswith("error: Not done: 2999-01-01 has not begun")
    stale = tablet.post("/ui/eod/close", data={"csrf": "0" * 32})
    assert stale.status_code == 400
    assert fresh_hub.query("SELECT count(*) FROM cash_counts") == [(0,)]
    assert fresh_hub.query("SELECT count(*) FROM till_floats") == [(0,)]
    assert fresh_hub.query("SELECT count(*) FROM z_reports") == [(0,)]


def test_the_page_renders_in_english_and_for_a_quiet_past_day(hub: Hub) -> None:
    tablet = ui_login(hub, "manager", lang="en")
    html = tablet.get("/ui/eod", params={"day": "2020-01-06"}).text
    assert '<html lang="en">' in html and "<h1>End of day</h1>" in html
    assert 'value="2020-01-06"' in html
    assert "No sales, refunds or top-ups on this day." in html and "No anomalies" in html
    assert "Close the day (Z report)" in html and "It cannot be undone" in html
    assert tablet.get("/ui/eod", params={"day": "not-a-day"}).status_code == 200  # falls back to today
    zh = ui_login(hub, "manager").get("/ui/eod", params={"day": "2020-01-06"}).text
    assert "<h1>日结</h1>" in zh and "没有异常" in zh and "日结（生成 Z 报表）" in zh
