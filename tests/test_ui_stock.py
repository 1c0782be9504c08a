"""The stock page (库存) at the tablet over plain HTTP, as a browser without script: levels and alerts,
expiring batches with their markdown, replenishment, receiving, stock-takes (盘点) from opening to
approval, the CSV import job, transfers, and what each role may do.

Demo figures (edge/seed/demo): SKU00010 blueberries (EAN 6953686088258, 21 on hand); SKU00014
coconut, 3 on hand under a low threshold of 6; SKU00023 onions, 80 kg over a high threshold of 60 kg;
SKU00038 silken tofu 3.50: lot L00013 expired yesterday (6), lot L00089 expires in 3 days (12);
SKU00001 Fuji apples by weight, PLU 12345, 13,500 g. Categories fresh-eggs (SKU00032–37),
dairy-milk (SKU00072–79) and snacks-nuts (SKU00150–160) are each used by one stock-take test.
"""

from __future__ import annotations

import re
import time
import uuid

import httpx

from tests.conftest import Hub
from tests.ui_support import csrf_of, post_form, ui_login

_FIELD = re.compile(r'name="(?P<name>receipt_id|stocktake_id|transfer_id)" value="(?P<value>[0-9a-f-]{36})"')
_COUNT = re.compile(r'name="count-(SKU\d+)"')


def field(html: str, name: str) -> str:
    found = {m["name"]: m["value"] for m in _FIELD.finditer(html)}
    assert name in found, f"the page has no {name} field"
    return found[name]


def row_of(html: str, marker: str) -> str:
    """The table row that holds `marker`."""
    rows = [r for r in html.split("<tr") if marker in r]
    assert len(rows) == 1, f"{len(rows)} rows hold {marker}"
    return rows[0].split("</tr>")[0]


def flash(tablet: httpx.Client, path: str) -> str:
    """The notice or error the next page shows after a redirect to `path`."""
    html = tablet.get(path).text
    found = re.search(r'<p class="flash (notice|error)"[^>]*>(.*?)</p>', html, re.S)
    assert found, "the page shows no notice"
    return f"{found.group(1)}: {found.group(2)}"


def on_hand(hub: Hub, sku: str) -> int:
    return int(hub.query("SELECT coalesce(sum(on_hand), 0) FROM stock_balance WHERE sku = ?", (sku,))[0][0])


def written(hub: Hub) -> dict[str, int]:
    tables = ("journal", "outbox", "stock_movements", "client_requests", "stocktakes", "transfers")
    counts = {t: hub.query(f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    counts["counted"] = hub.query("SELECT count(*) FROM stocktake_lines WHERE counted IS NOT NULL")[0][0]
    return counts


def open_stocktake(tablet: httpx.Client, category: str) -> str:
    page = tablet.get("/ui/stock/counts").text
    resp = tablet.post("/ui/stock/counts", data={"csrf": csrf_of(page), "stocktake_id": field(page, "stocktake_id"),
                                                 "scope": category, "note": "weekly"})
    assert resp.status_code == 303, resp.text
    found = re.fullmatch(r"/ui/stock/counts/([0-9a-f-]{36})", resp.headers["location"])
    assert found, resp.headers["location"]
    return found.group(1)


# -- levels, expiring, replenishment -------------------------------------------------------------------

def test_levels_search_finds_an_item_by_barcode_in_both_languages(hub: Hub) -> None:
    zh = ui_login(hub, "manager").get("/ui/stock", params={"q": "6953686088258"})
    assert zh.status_code == 200
    assert "<h1>库存</h1>" in zh.text and 'aria-current="page">库存</a>' in zh.text
    row = row_of(zh.text, "SKU00010")
    assert '<td class="num">21</td>' in row and '<span class="tag good">正常</span>' in row
    assert "SKU00013" not in zh.text
    en = ui_login(hub, "guide", lang="en").get("/ui/stock", params={"q": "6953686088258"})
    assert "<h1>Stock levels</h1>" in en.text and "SKU00010" in en.text
    nothing = ui_login(hub, "manager").get("/ui/stock", params={"q": "0000000000000"}).text
    assert "没有符合搜索条件的商品。" in nothing


def test_alert_filters_show_low_and_high_stock_with_words(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    low = tablet.get("/ui/stock", params={"alert": "low"}).text
    assert '<tr class="alert-low">' in low and "库存不足</span>" in row_of(low, "SKU00014")
    assert "SKU00023" not in low and "SKU00010" not in low
    high = tablet.get("/ui/stock", params={"alert": "high"}).text
    assert "库存积压</span>" in row_of(high, "SKU00023") and "SKU00014" not in high
    assert "80.000 kg" in row_of(high, "SKU00023") and "60.000 kg" in row_of(high, "SKU00023")
    from_dashboard = tablet.get("/ui/stock", params={"alerts": "1"}).text
    assert "SKU00014" in from_dashboard and "SKU00023" in from_dashboard and "SKU00010" not in from_dashboard
    assert '<option value="any" selected>' in from_dashboard


def test_expiring_shows_the_tofu_batches_with_markdown_and_removal(hub: Hub) -> None:
    zh = ui_login(hub, "cashier").get("/ui/stock/expiring")
    assert zh.status_code == 200 and "<h1>临期批次</h1>" in zh.text
    soon = row_of(zh.text, "L00089")
    assert "降价 30%" in soon and "¥2.45" in soon and "3 天" in soon and '<td class="num">12</td>' in soon
    expired = row_of(zh.text, "L00013")
    assert "下架" in expired and "不可销售" in expired and "已过期 1 天" in expired
    en = ui_login(hub, "manager", lang="en").get("/ui/stock/expiring", params={"days": "3"}).text
    assert "Mark down 30%" in row_of(en, "L00089") and "Remove from shelf" in row_of(en, "L00013")
    assert 'name="days" type="number" inputmode="numeric" min="0" max="365" step="1" value="3"' in en
    assert ui_login(hub, "manager").get("/ui/stock/expiring", params={"days": "abc"}).status_code == 200


def test_replenishment_suggests_from_sales_with_lead_and_cover_inputs(hub: Hub) -> None:
    sale = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": [{"sku": "SKU00010", "qty": 10}],
            "tenders": [{"method": "cash", "amount": 100_000}]}
    assert hub.login("cashier").post("/api/v1/sales", json=sale).status_code == 201
    tablet = ui_login(hub, "manager")
    defaults = tablet.get("/ui/stock/replenishment").text
    assert 'id="rep-lead"' in defaults and 'value="2"' in defaults and 'value="7"' in defaults
    longer = tablet.get("/ui/stock/replenishment", params={"lead": "30", "cover": "30"}).text
    row = row_of(longer, "SKU00010")  # 10 sold in 28 days: ceil(10 × 60 / 28) = 22 needed, 11 on hand
    assert [c for c in re.findall(r'<td class="num">(?:<strong>)?([^<]*)', row)] == ["0.36", "11", "30.8", "0", "11"]


# -- receiving -------------------------------------------------------------------------------------------

def test_receiving_through_the_form_raises_on_hand_once(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    page = tablet.get("/ui/stock/receive").text
    assert "<h1>收货</h1>" in page and '<label for="recv-qty">数量</label>' in page
    before, moves = on_hand(hub, "SKU00001"), written(hub)["stock_movements"]
    form = {"csrf": csrf_of(page), "receipt_id": field(page, "receipt_id"), "item": "12345", "qty": "1500",
            "lot": "A-7", "expiry": "2030-01-31", "supplier": "Guoguo Farm"}
    first = tablet.post("/ui/stock/receive", data=form)
    assert first.status_code == 303 and first.headers["location"] == "/ui/stock/receive"
    assert flash(tablet, "/ui/stock/receive") == "notice: 已收货 散装红富士苹果 1.500 kg，现有库存：15.000 kg。"
    again = tablet.post("/ui/stock/receive", data=form)  # a double tap sends the same form again
    assert again.status_code == 303
    assert on_hand(hub, "SKU00001") == before + 1500
    assert written(hub)["stock_movements"] == moves + 1
    assert hub.query("SELECT lot, expiry FROM batches WHERE sku = 'SKU00001'") == [("A-7", "2030-01-31")]


def test_sales_guide_cannot_receive(hub: Hub) -> None:
    guide = ui_login(hub, "guide")
    levels = guide.get("/ui/stock")
    assert levels.status_code == 200 and 'href="/ui/stock/receive"' not in levels.text
    assert guide.get("/ui/stock/receive").status_code == 403
    before = written(hub)
    forged = guide.post("/ui/stock/receive", data={"csrf": csrf_of(levels.text), "receipt_id": str(uuid.uuid4()),
                                                   "item": "SKU00010", "qty": "5"})
    assert forged.status_code == 403
    assert written(hub) == before


def test_bad_receiving_values_give_an_error_and_write_nothing(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    page = tablet.get("/ui/stock/receive").text
    base = {"csrf": csrf_of(page), "receipt_id": field(page, "receipt_id"), "item": "SKU00010", "qty": "5"}
    before = written(hub)
    cases = [({"qty": "1.5"}, "数量请填 1 到 10,000,000 之间的整数"), ({"qty": "abc"}, "数量请填"),
             ({"qty": "0"}, "数量请填"), ({"qty": "-3"}, "数量请填"),
             ({"item": "NOPE-1"}, "没有此商品编码、条码或 PLU 对应的商品：NOPE-1"),
             ({"item": ""}, "请输入或扫描商品编码"), ({"expiry": "2025-13-40"}, "到期日请填日期"),
             ({"lot": "x" * 65}, "批号最多 64 个字符"), ({"receipt_id": "not-a-uuid"}, "批号最多 64 个字符")]
    for change, message in cases:
        resp = tablet.post("/ui/stock/receive", data={**base, **change})
        assert resp.status_code == 303, change
        shown = flash(tablet, "/ui/stock/receive")
        assert shown.startswith("error: ") and message in shown, (change, shown)
    assert written(hub) == before
    stale = tablet.post("/ui/stock/receive", data={**base, "csrf": "0" * 32})
    assert stale.status_code == 400 and written(hub) == before


# -- stock-takes -----------------------------------------------------------------------------------------

def test_a_stocktake_through_the_forms_books_the_counts(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    listing = tablet.get("/ui/stock/counts").text
    assert '<button type="submit">新建盘点单</button>' in listing
    sid = open_stocktake(tablet, "fresh-eggs")
    assert flash(tablet, f"/ui/stock/counts/{sid}") == "notice: 盘点单已创建：共 6 个商品待盘。"
    sheet = tablet.get(f"/ui/stock/counts/{sid}").text
    assert "<h1>盘点：蛋品</h1>" in sheet
    assert _COUNT.findall(sheet) == ["SKU00032", "SKU00033", "SKU00034", "SKU00035", "SKU00036", "SKU00037"]
    assert '<label for="count-SKU00033">德青源 土鸡蛋 10枚</label>' in sheet
    counted = {"SKU00032": 13_950, "SKU00033": 29, "SKU00034": 21, "SKU00035": 15, "SKU00036": 0}
    resp = tablet.post(f"/ui/stock/counts/{sid}/counts", data={
        "csrf": csrf_of(sheet), **{f"count-{sku}": str(n) for sku, n in counted.items()},
        "count-SKU00037": "", **{f"prev-{sku}": "" for sku in counted}, "prev-SKU00037": ""})
    assert resp.status_code == 303
    assert flash(tablet, f"/ui/stock/counts/{sid}") == "notice: 已保存 5 条盘点数。已盘 5 / 6 个商品。"
    review = tablet.get(f"/ui/stock/counts/{sid}").text
    variances = review.split('id="st-var"')[1]
    assert re.findall(r'<span class="hint">(SKU\d+)</span>', variances) == ["SKU00036", "SKU00033", "SKU00032"]
    cells = re.findall(r'<td class="num">([^<]*)', row_of(variances, "SKU00036"))
    assert cells == ["16", "0", "-16 ", "-¥158.40"] and "盘亏</span>" in row_of(variances, "SKU00036")
    assert re.findall(r'<td class="num">([^<]*)', row_of(variances, "SKU00032")) == [
        "14.000 kg", "13.950 kg", "-0.050 kg ", "-¥0.60"]
    assert "<strong>-¥175.90</strong>" in variances
    assert "还有 1 个商品未盘。" in review and '<input type="hidden" name="prev-SKU00033" value="29">' in review
    assert post_form(tablet, f"/ui/stock/counts/{sid}", f"/ui/stock/counts/{sid}/submit", {}).status_code == 303
    submitted = tablet.get(f"/ui/stock/counts/{sid}").text
    assert "已提交，待审核" in submitted and 'name="count-' not in submitted
    assert '<button type="submit">审核通过</button>' in submitted and 'data-confirm="确认审核此盘点单' in submitted
    assert '<label for="zero-uncounted">将未盘的 1 个商品库存清零</label>' in submitted
    approved = post_form(tablet, f"/ui/stock/counts/{sid}", f"/ui/stock/counts/{sid}/approve",
                         {"zero_uncounted": "1"})
    assert approved.status_code == 303
    assert flash(tablet, f"/ui/stock/counts/{sid}").startswith("notice: 盘点已审核：调整 ")
    assert {sku: on_hand(hub, sku) for sku in counted} == counted
    assert on_hand(hub, "SKU00037") == 0
    assert hub.query("SELECT state FROM stocktakes WHERE stocktake_id = ?", (sid,)) == [("approved",)]
    verdict = hub.login("manager").get("/api/v1/journal/verify").json()
    assert verdict["ok"] is True
    again = post_form(tablet, f"/ui/stock/counts/{sid}", f"/ui/stock/counts/{sid}/approve", {})
    assert again.status_code == 303 and flash(tablet, f"/ui/stock/counts/{sid}") == "error: 这张盘点单已经审核过了。"


def test_cashier_counts_and_submits_but_cannot_approve(hub: Hub) -> None:
    manager = ui_login(hub, "manager")
    sid = open_stocktake(manager, "dairy-milk")
    cashier = ui_login(hub, "cashier")
    sheet = cashier.get(f"/ui/stock/counts/{sid}")
    assert sheet.status_code == 200
    assert "保存盘点数" in sheet.text and "提交</button>" in sheet.text
    assert "审核通过" not in sheet.text and "取消盘点单" not in sheet.text
    assert "新建盘点单" not in cashier.get("/ui/stock/counts").text
    resp = cashier.post(f"/ui/stock/counts/{sid}/counts", data={"csrf": csrf_of(sheet.text), "count-SKU00078": "30",
                                                                "prev-SKU00078": ""})
    assert resp.status_code == 303
    assert hub.query("SELECT counted, counted_by FROM stocktake_lines WHERE stocktake_id = ? AND sku = 'SKU00078'",
                     (sid,)) == [(30, "U-cashier")]
    assert post_form(cashier, f"/ui/stock/counts/{sid}", f"/ui/stock/counts/{sid}/submit", {}).status_code == 303
    waiting = cashier.get(f"/ui/stock/counts/{sid}").text
    assert "已提交，等待店长审核差异。" in waiting and "审核通过" not in waiting
    before = written(hub)
    for action in ("approve", "cancel"):
        forged = cashier.post(f"/ui/stock/counts/{sid}/{action}", data={"csrf": csrf_of(waiting),
                                                                        "zero_uncounted": "1"})
        assert forged.status_code == 403 and "您的角色" in forged.text
    assert written(hub) == before
    assert hub.query("SELECT state FROM stocktakes WHERE stocktake_id = ?", (sid,)) == [("submitted",)]
    assert post_form(manager, f"/ui/stock/counts/{sid}", f"/ui/stock/counts/{sid}/cancel", {}).status_code == 303
    assert hub.query("SELECT state FROM stocktakes WHERE stocktake_id = ?", (sid,)) == [("cancelled",)]


def wait_for_job(tablet: httpx.Client, path: str) -> str:
    for _ in range(100):
        html = tablet.get(path).text
        if 'class="job-state" aria-live="polite">已完成' in html or "失败" in html:
            return html
        time.sleep(0.1)
    raise AssertionError(f"the job at {path} did not finish")


def test_csv_import_runs_as_a_job_and_reports_bad_lines(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    sid = open_stocktake(tablet, "snacks-nuts")
    text = "sku,counted\nSKU00150,60\nNOPE,3\nSKU00151,abc\n\nSKU00159,8400\n"
    page = tablet.get(f"/ui/stock/counts/{sid}").text
    resp = tablet.post(f"/ui/stock/counts/{sid}/import", data={"csrf": csrf_of(page), "csv": text})
    assert resp.status_code == 303
    job_path = resp.headers["location"]
    assert re.fullmatch(r"/ui/jobs/[0-9a-f-]{36}", job_path)
    done = wait_for_job(tablet, job_path)
    assert ("已完成 已导入 2 条盘点数。 2 行无法读取： 第 3 行：no item with sku or barcode &#39;NOPE&#39;; "
            "第 4 行：counted must be a whole number") in done
    assert f'href="/ui/stock/counts/{sid}"' in done
    lines = hub.query("SELECT sku, counted FROM stocktake_lines WHERE stocktake_id = ? AND counted IS NOT NULL "
                      "ORDER BY sku", (sid,))
    assert lines == [("SKU00150", 60), ("SKU00159", 8400)]
    assert "第 3 行" in tablet.get(f"/ui/stock/counts/{sid}").text  # the last import shows on the stock-take
    crlf_with_bom = "\ufeffSKU00152,31\r\n6920152400005,9\r\n".encode()
    upload = tablet.post(f"/ui/stock/counts/{sid}/import", data={"csrf": csrf_of(page)},
                         files={"file": ("counts.csv", crlf_with_bom, "text/csv")})
    assert upload.status_code == 303
    assert "已导入 1 条盘点数。 1 行无法读取： 第 2 行：" in wait_for_job(tablet, upload.headers["location"])
    assert hub.query("SELECT counted FROM stocktake_lines WHERE stocktake_id = ? AND sku = 'SKU00152'",
                     (sid,)) == [(31,)]
    assert post_form(tablet, f"/ui/stock/counts/{sid}", f"/ui/stock/counts/{sid}/cancel", {}).status_code == 303


def test_bad_stocktake_forms_give_an_error_and_write_nothing(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    page = tablet.get("/ui/stock/counts").text
    before = written(hub)
    resp = tablet.post("/ui/stock/counts", data={"csrf": csrf_of(page), "stocktake_id": field(page, "stocktake_id"),
                                                 "scope": "no-such-category"})
    assert resp.status_code == 303 and flash(tablet, "/ui/stock/counts") == "error: 没有这个品类。"
    assert written(hub) == before
    sid = open_stocktake(tablet, "fresh-tofu")
    sheet = tablet.get(f"/ui/stock/counts/{sid}").text
    before = written(hub)
    for value in ("abc", "-1", "2.5", "100000001"):
        resp = tablet.post(f"/ui/stock/counts/{sid}/counts", data={
            "csrf": csrf_of(sheet), "count-SKU00038": "5", "count-SKU00039": value})
        assert resp.status_code == 303
        assert flash(tablet, f"/ui/stock/counts/{sid}").startswith(
            "error: SKU00039 的盘点数不是 0 到 100,000,000 之间的整数")
    outside = tablet.post(f"/ui/stock/counts/{sid}/counts", data={"csrf": csrf_of(sheet), "count-SKU00010": "5"})
    assert outside.status_code == 303
    assert flash(tablet, f"/ui/stock/counts/{sid}") == "error: 有商品不在本次盘点范围内。"
    empty = tablet.post(f"/ui/stock/counts/{sid}/import", data={"csrf": csrf_of(sheet), "csv": "  \n"})
    assert empty.status_code == 303 and "请粘贴" in flash(tablet, f"/ui/stock/counts/{sid}")
    assert written(hub) == before
    assert post_form(tablet, f"/ui/stock/counts/{sid}", f"/ui/stock/counts/{sid}/cancel", {}).status_code == 303


def test_the_count_sheet_pages_and_finds_an_item_by_barcode(hub: Hub) -> None:
    tablet = ui_login(hub, "manager", lang="en")
    sid = open_stocktake(tablet, "snacks")
    first = tablet.get(f"/ui/stock/counts/{sid}").text
    assert len(_COUNT.findall(first)) == 50 and f'href="/ui/stock/counts/{sid}?offset=50"' in first
    assert '<button type="submit">Save counts</button>' in first and "<h1>Stock-take: Snacks &amp; Drinks</h1>" in first
    scanned = tablet.get(f"/ui/stock/counts/{sid}", params={"q": "6967219058922"}).text  # the scanner types it
    assert _COUNT.findall(scanned) == ["SKU00151"] and '<label for="count-SKU00151">Three Squirrels Pecans' in scanned
    assert _COUNT.findall(tablet.get(f"/ui/stock/counts/{sid}", params={"q": "10038"}).text) == ["SKU00160"]  # PLU
    assert _COUNT.findall(tablet.get(f"/ui/stock/counts/{sid}", params={"q": "macadamia"}).text) == ["SKU00152"]
    elsewhere = tablet.get(f"/ui/stock/counts/{sid}", params={"q": "6953686088258"}).text  # blueberries: fruit
    assert _COUNT.findall(elsewhere) == [] and "No item in this stock-take matches" in elsewhere
    assert post_form(tablet, f"/ui/stock/counts/{sid}", f"/ui/stock/counts/{sid}/cancel", {}).status_code == 303


# -- transfers -------------------------------------------------------------------------------------------

def test_a_transfer_request_from_the_form_is_listed_as_incoming(hub: Hub) -> None:
    tablet = ui_login(hub, "manager")
    page = tablet.get("/ui/stock/transfers").text
    assert "<h1>调拨</h1>" in page and "没有进行中的调拨。" in page
    form = {"csrf": csrf_of(page), "transfer_id": field(page, "transfer_id"), "from_store": "S-NORTH",
            "item": "6953686088258", "qty": "12", "note": "weekend"}
    assert tablet.post("/ui/stock/transfers", data=form).status_code == 303
    assert tablet.post("/ui/stock/transfers", data=form).status_code == 303  # the same form again books once
    assert hub.query("SELECT from_store, state FROM transfers") == [("S-NORTH", "requested")]
    listed = tablet.get("/ui/stock/transfers").text
    assert "调入：来自 S-NORTH" in listed and "等待 S-NORTH 发货。" in listed
    assert '<td class="num">12</td>' in row_of(listed, "SKU00010")
    assert 'action="/ui/stock/transfers/' not in listed.split("向其他门店申请调拨")[0]  # nothing to ship or receive
    guide = ui_login(hub, "guide").get("/ui/stock/transfers").text
    assert "调入：来自 S-NORTH" in guide and "申请调拨</button>" not in guide
