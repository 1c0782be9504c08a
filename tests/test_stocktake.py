"""Stock-takes (盘点) and the Stock page's read models, over HTTP against a real hub.

Demo figures (edge/seed/demo/items.csv, batches.csv), category fresh-fruit holds 14 items:
  SKU00001 Fuji apples, kg, 1598 per kg, PLU 12345, 13500 g, no batches
  SKU00010 blueberries, each, 1990, EAN 6953686088258, 21 on hand
  SKU00013 Shine Muscat grapes, each, 2990, EAN 6964985006461, 28 on hand, low 6 / high 40
  SKU00038 L00013 expired yesterday (6 on hand), L00089 expires in 3 days (12)
A weighed item's stock is grams, so its count is grams too.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from edge.stock import insights, stocktake
from edge.stock.ledger import Actor

if TYPE_CHECKING:
    from conftest import Hub

BLUEBERRIES = "6953686088258"
CASH = [{"method": "cash", "amount": 1_000_000}]


def new_id() -> str:
    return str(uuid.uuid4())


def on_hand(client: httpx.Client, sku: str) -> int:
    resp = client.get(f"/api/v1/stock/{sku}")
    assert resp.status_code == 200, resp.text
    return int(resp.json()["on_hand"])


def sell(client: httpx.Client, lines: list[dict[str, Any]]) -> None:
    resp = client.post("/api/v1/sales", json={"sale_id": new_id(), "till_id": "T1", "lines": lines, "tenders": CASH})
    assert resp.status_code == 201, resp.text


def open_take(client: httpx.Client, category: str | None = "fresh-fruit") -> str:
    sid = new_id()
    body: dict[str, Any] = {"stocktake_id": sid}
    if category:
        body["category"] = category
    resp = client.post("/api/v1/stocktakes", json=body)
    assert resp.status_code == 201, resp.text
    return sid


def lines_by_sku(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ln["sku"]: ln for ln in view["lines"]}


# -- the whole story ---------------------------------------------------------------------------------

def test_a_stocktake_from_open_to_approval(fresh_hub: Hub) -> None:
    manager, cashier = fresh_hub.login("manager"), fresh_hub.login("cashier")
    sid = new_id()
    opened = manager.post("/api/v1/stocktakes", json={"stocktake_id": sid, "category": "fresh-fruit",
                                                      "note": "monthly"})
    assert opened.status_code == 201, opened.text
    assert {k: opened.json()[k] for k in ("state", "category", "items", "counted", "opened_by")} == {
        "state": "open", "category": "fresh-fruit", "items": 14, "counted": 0, "opened_by": "U-manager"}

    sell(cashier, [{"sku": "SKU00013", "qty": 2}])  # sold while the shelf is being counted, before its count
    counts = cashier.put(f"/api/v1/stocktakes/{sid}/counts", json={"counts": [
        {"sku": "SKU00013", "counted": 25},
        {"barcode": BLUEBERRIES, "counted": 21},
        {"barcode": "12345", "counted": 13_000},  # apples by PLU, in grams
    ]})
    assert counts.status_code == 200, counts.text
    assert counts.json() == {"applied": 3, "items": 14, "counted": 3}
    sell(cashier, [{"barcode": BLUEBERRIES, "qty": 1}])  # sold after the blueberries were counted

    view = cashier.get(f"/api/v1/stocktakes/{sid}").json()
    lines = lines_by_sku(view)
    assert {k: lines["SKU00013"][k] for k in ("expected", "counted", "variance", "price", "value")} == {
        "expected": 26, "counted": 25, "variance": -1, "price": 2990, "value": -2990}
    assert {k: lines["SKU00010"][k] for k in ("expected", "counted", "variance", "value")} == {
        "expected": 21, "counted": 21, "variance": 0, "value": 0}
    assert {k: lines["SKU00001"][k] for k in ("expected", "counted", "variance", "value")} == {
        "expected": 13_500, "counted": 13_000, "variance": -500, "value": -799}
    assert (view["variance_value"], view["shortage_value"]) == (-3789, -3789)
    assert len(view["uncounted"]) == 11
    assert {"sku": "SKU00014", "expected": 3, "unit": "each", "price": 890} == {
        k: v for k, v in next(u for u in view["uncounted"] if u["sku"] == "SKU00014").items()
        if k in ("sku", "expected", "unit", "price")}

    assert cashier.post(f"/api/v1/stocktakes/{sid}/submit").json()["state"] == "submitted"
    late = cashier.put(f"/api/v1/stocktakes/{sid}/counts", json={"counts": [{"sku": "SKU00011", "counted": 1}]})
    assert (late.status_code, late.json()["code"]) == (409, "wrong_state")
    refused = cashier.post(f"/api/v1/stocktakes/{sid}/approve", json={"zero_uncounted": False})
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")

    approved = manager.post(f"/api/v1/stocktakes/{sid}/approve", json={"zero_uncounted": False})
    assert approved.status_code == 200, approved.text
    result = approved.json()
    assert (result["adjusted"], len(result["movements"]), result["variance_value"]) == (2, 2, -3789)
    assert on_hand(manager, "SKU00013") == 25
    assert on_hand(manager, "SKU00001") == 13_000
    assert on_hand(manager, "SKU00010") == 20  # counted 21, one sold since
    assert on_hand(manager, "SKU00014") == 3  # not counted: left alone
    assert fresh_hub.query("SELECT sku, qty, kind FROM stock_movements WHERE ref = ? ORDER BY sku", (sid,)) == [
        ("SKU00001", -500, "count"), ("SKU00013", -1, "count")]
    assert fresh_hub.query("SELECT count(*) FROM outbox WHERE ref = ? AND kind = 'stock'", (sid,)) == [(2,)]
    assert fresh_hub.query("SELECT kind FROM journal WHERE seq = ?", (result["journal_seq"],)) == [
        ("stock.stocktake",)]
    verify = fresh_hub.backroom("journal", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    again = manager.post(f"/api/v1/stocktakes/{sid}/approve", json={"zero_uncounted": False})
    assert (again.status_code, again.json()["code"]) == (409, "already_approved")
    assert fresh_hub.query("SELECT count(*) FROM stock_movements WHERE ref = ?", (sid,)) == [(2,)]
    cancelled = manager.post(f"/api/v1/stocktakes/{sid}/cancel")
    assert (cancelled.status_code, cancelled.json()["code"]) == (409, "wrong_state")
    after = manager.get(f"/api/v1/stocktakes/{sid}").json()
    assert after["stocktake"]["state"] == "approved"
    assert after["result"]["journal_seq"] == result["journal_seq"]
    assert lines_by_sku(after)["SKU00013"]["expected"] == 26
    listed = cashier.get("/api/v1/stocktakes", params={"state": "approved"}).json()["stocktakes"]
    assert [s["stocktake_id"] for s in listed] == [sid]


def test_zero_uncounted_empties_what_nobody_counted(fresh_hub: Hub) -> None:
    manager = fresh_hub.login("manager")
    sid = open_take(manager, "fresh-eggs")
    skus = [r[0] for r in fresh_hub.query("SELECT sku FROM items WHERE category_id = 'fresh-eggs' ORDER BY sku")]
    first = skus[0]
    assert manager.put(f"/api/v1/stocktakes/{sid}/counts",
                       json={"counts": [{"sku": first, "counted": 4}]}).status_code == 200
    assert manager.post(f"/api/v1/stocktakes/{sid}/submit").status_code == 200
    result = manager.post(f"/api/v1/stocktakes/{sid}/approve", json={"zero_uncounted": True}).json()
    assert result["zero_uncounted"] is True
    assert [on_hand(manager, sku) for sku in skus] == [4] + [0] * (len(skus) - 1)
    # Batched stock goes first-expiring-first, so no batch is left holding what is not there.
    assert fresh_hub.query("SELECT count(*) FROM stock_balance WHERE sku IN (SELECT sku FROM items"
                           " WHERE category_id = 'fresh-eggs') AND on_hand < 0") == [(0,)]


def test_a_cancelled_stocktake_posts_nothing_and_frees_its_items(fresh_hub: Hub) -> None:
    manager = fresh_hub.login("manager")
    sid = open_take(manager)
    assert manager.put(f"/api/v1/stocktakes/{sid}/counts",
                       json={"counts": [{"sku": "SKU00013", "counted": 1}]}).status_code == 200
    overlap = manager.post("/api/v1/stocktakes", json={"stocktake_id": new_id(), "category": "fresh"})
    assert (overlap.status_code, overlap.json()["code"], overlap.json()["stocktake_id"]) == (
        409, "stocktake_overlap", sid)
    assert manager.post(f"/api/v1/stocktakes/{sid}/cancel").json()["state"] == "cancelled"
    assert fresh_hub.query("SELECT count(*) FROM stock_movements WHERE ref = ?", (sid,)) == [(0,)]
    assert on_hand(manager, "SKU00013") == 28
    whole = manager.post("/api/v1/stocktakes", json={"stocktake_id": new_id()})
    assert whole.status_code == 201, whole.text
    assert whole.json()["items"] == fresh_hub.query("SELECT count(*) FROM items WHERE active = 1")[0][0]


# -- who may, and bad input --------------------------------------------------------------------------

def test_a_cashier_counts_but_does_not_open_approve_or_cancel(hub: Hub) -> None:
    cashier, manager = hub.login("cashier"), hub.login("manager")
    refused = cashier.post("/api/v1/stocktakes", json={"stocktake_id": new_id()})
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    sid = open_take(manager, "clothing-apparel")
    sku = hub.query("SELECT sku FROM items WHERE category_id = 'clothing-apparel' ORDER BY sku LIMIT 1")[0][0]
    assert cashier.put(f"/api/v1/stocktakes/{sid}/counts",
                       json={"counts": [{"sku": sku, "counted": 2}]}).status_code == 200
    assert cashier.post(f"/api/v1/stocktakes/{sid}/cancel").status_code == 403
    guide = hub.login("guide")
    assert guide.get(f"/api/v1/stocktakes/{sid}").status_code == 200
    assert manager.post(f"/api/v1/stocktakes/{sid}/cancel").status_code == 200


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"counts": []}, 400, "invalid_field"),
    ({"counts": [{"sku": "SKU00031", "counted": -1}]}, 400, "invalid_field"),
    ({"counts": [{"sku": "SKU00031", "counted": "5"}]}, 400, "invalid_field"),
    ({"counts": [{"sku": "SKU00031", "counted": 5, "lot": "L1"}]}, 400, "invalid_field"),
    ({"counts": [{"counted": 5}]}, 422, "sku_or_barcode"),
    ({"counts": [{"sku": "SKU00031", "barcode": BLUEBERRIES, "counted": 5}]}, 422, "sku_or_barcode"),
    ({"counts": [{"sku": "NOPE-1", "counted": 5}]}, 422, "unknown_item"),
    ({"counts": [{"barcode": "0000000000000", "counted": 5}]}, 422, "unknown_item"),
    ({"counts": [{"sku": "SKU00010", "counted": 5}]}, 422, "not_in_scope"),
    ({"count": [{"sku": "SKU00031", "counted": 5}]}, 400, "invalid_field"),
])
def test_bad_counts_are_refused_and_change_nothing(hub: Hub, body: dict[str, Any], status: int, code: str) -> None:
    manager = hub.login("manager")
    sid = open_take(manager, "household-paper")
    resp = manager.put(f"/api/v1/stocktakes/{sid}/counts", json=body)
    assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text
    assert hub.query("SELECT count(*) FROM stocktake_lines WHERE stocktake_id = ? AND counted IS NOT NULL",
                     (sid,)) == [(0,)]
    assert manager.post(f"/api/v1/stocktakes/{sid}/cancel").status_code == 200


def test_an_unknown_sku_is_named_in_the_error(hub: Hub) -> None:
    manager = hub.login("manager")
    sid = open_take(manager, "household-cleaning")
    resp = manager.put(f"/api/v1/stocktakes/{sid}/counts", json={"counts": [{"sku": "SKU99999", "counted": 1}]})
    assert resp.status_code == 422
    assert resp.json()["sku"] == "SKU99999"
    assert "SKU99999" in resp.json()["message"]
    assert manager.post(f"/api/v1/stocktakes/{sid}/cancel").status_code == 200


def test_bad_opens_and_unknown_stocktakes(hub: Hub) -> None:
    manager = hub.login("manager")
    cases = [
        ({"stocktake_id": "not-a-uuid"}, 400, "invalid_field"),
        ({"stocktake_id": new_id(), "category": "nope"}, 422, "unknown_category"),
        ({"stocktake_id": new_id(), "scope": "all"}, 400, "invalid_field"),
    ]
    for body, status, code in cases:
        resp = manager.post("/api/v1/stocktakes", json=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), body
    sid = new_id()
    first = manager.post("/api/v1/stocktakes", json={"stocktake_id": sid, "category": "personal-oral"})
    retried = manager.post("/api/v1/stocktakes", json={"stocktake_id": sid, "category": "personal-oral"})
    assert retried.status_code == 201 and retried.json() == first.json()
    clash = manager.post("/api/v1/stocktakes", json={"stocktake_id": sid, "category": "personal-bath"})
    assert (clash.status_code, clash.json()["code"]) == (409, "id_conflict")
    early = manager.post(f"/api/v1/stocktakes/{sid}/approve", json={"zero_uncounted": False})
    assert (early.status_code, early.json()["code"]) == (409, "wrong_state")
    bad_flag = manager.post(f"/api/v1/stocktakes/{sid}/approve", json={"zero_uncounted": "yes"})
    assert bad_flag.status_code == 400
    assert manager.post(f"/api/v1/stocktakes/{sid}/cancel").status_code == 200
    unknown = new_id()
    for method, path in (("GET", ""), ("POST", "/submit"), ("POST", "/cancel")):
        resp = manager.request(method, f"/api/v1/stocktakes/{unknown}{path}")
        assert (resp.status_code, resp.json()["code"]) == (404, "unknown_stocktake")
    assert manager.get("/api/v1/stocktakes", params={"state": "lost"}).status_code == 400


# -- CSV import (the function the tablet calls), on a real seeded database ---------------------------

@pytest.fixture
def seeded(tmp_path: Path) -> sqlite3.Connection:
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "edge.cli", "seed", "--demo", "--data", str(data)], check=True,
                   capture_output=True, timeout=120)
    return sqlite3.connect(data / "hub.sqlite3")


def test_csv_counts_report_bad_lines_by_number_and_progress_in_chunks(seeded: sqlite3.Connection) -> None:
    actor, at = Actor("U-manager"), "2025-01-01T09:00:00.000+08:00"
    opened = stocktake.open_stocktake(seeded, stocktake.OpenRequest(uuid.uuid4(), "fresh-fruit"), "h", actor, at)
    text = "\n".join([
        "sku,counted",
        "SKU00013,25",
        f"{BLUEBERRIES},20",
        "SKU00011,many",
        "",
        "SKU99999,3",
        "SKU00031,4",
        "SKU00012,-1",
        "SKU00014",
        "12345,13000",
        '"SKU00011", 7',
    ])
    seen: list[tuple[int, int]] = []
    result = stocktake.import_counts_csv(seeded, opened.stocktake_id, text, actor, at,
                                         progress=lambda done, total: seen.append((done, total)), chunk=4)
    assert result.applied == 4
    assert [(e.line, e.message.split(" ")[0]) for e in result.errors] == [
        (4, "counted"), (6, "no"), (7, "SKU00031"), (8, "counted"), (9, "expected")]
    assert seen == [(4, 11), (8, 11), (11, 11)]
    counted = seeded.execute("SELECT sku, counted FROM stocktake_lines WHERE stocktake_id = ? AND counted IS NOT NULL"
                             " ORDER BY sku", (opened.stocktake_id,)).fetchall()
    assert counted == [("SKU00001", 13000), ("SKU00010", 20), ("SKU00011", 7), ("SKU00013", 25)]


# -- stock insights ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("days_left", "action", "percent_off", "price"), [
    (-3, "remove", 100, None),
    (0, "remove", 100, None),
    (1, "markdown", 50, 995),
    (2, "markdown", 30, 1393),
    (3, "markdown", 30, 1393),
    (4, "markdown", 10, 1791),
    (7, "markdown", 10, 1791),
    (8, "none", 0, 1990),
])
def test_the_markdown_schedule(days_left: int, action: str, percent_off: int, price: int | None) -> None:
    assert insights.markdown_for(days_left, 1990) == insights.Suggestion(action, percent_off, price)  # type: ignore[arg-type]


def test_expiring_batches_come_with_their_markdown(hub: Hub) -> None:
    resp = hub.login("guide").get("/api/v1/stock/expiring", params={"within_days": 3})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["within_days"] == 3
    eggs = [b for b in body["batches"] if b["sku"] == "SKU00038"]
    assert [(b["lot"], b["days_left"], b["on_hand"], b["action"], b["percent_off"]) for b in eggs] == [
        ("L00013", -1, 6, "remove", 100), ("L00089", 3, 12, "markdown", 30)]
    assert eggs[0]["suggested_price"] is None
    assert eggs[1]["suggested_price"] == eggs[1]["price"] - (eggs[1]["price"] * 30 + 50) // 100
    assert all(b["days_left"] <= 3 for b in body["batches"])
    assert [b["expiry"] for b in body["batches"]] == sorted(b["expiry"] for b in body["batches"])
    assert hub.login("guide").get("/api/v1/stock/expiring", params={"within_days": 999}).status_code == 400


def test_levels_search_filter_and_page_beside_the_sku_route(hub: Hub) -> None:
    guide = hub.login("guide")
    found = guide.get("/api/v1/stock/levels", params={"query": BLUEBERRIES}).json()
    assert found["total"] == 1
    assert {k: found["items"][0][k] for k in ("sku", "unit", "low", "high")} == {
        "sku": "SKU00010", "unit": "each", "low": 6, "high": 40}
    low = guide.get("/api/v1/stock/levels", params={"alert": "low", "limit": 500}).json()
    assert low["total"] == len(low["items"]) > 0
    assert all(i["alert"] == "low" and i["on_hand"] < i["low"] for i in low["items"])
    assert "SKU00014" in {i["sku"] for i in low["items"]}  # coconuts: 3 on hand, low threshold 6
    page = guide.get("/api/v1/stock/levels", params={"limit": 10, "offset": 10}).json()
    assert page["total"] == hub.query("SELECT count(*) FROM items WHERE active = 1")[0][0]
    assert [i["sku"] for i in page["items"]] == [f"SKU{n:05d}" for n in range(11, 21)]
    assert guide.get("/api/v1/stock/levels", params={"alert": "weird"}).status_code == 400
    assert guide.get("/api/v1/stock/SKU00010").json()["sku"] == "SKU00010"


def test_replenishment_for_an_item_sold_steadily(fresh_hub: Hub) -> None:
    cashier, manager = fresh_hub.login("cashier"), fresh_hub.login("manager")
    for _ in range(4):
        sell(cashier, [{"sku": "SKU00013", "qty": 7}])  # 28 in the 28-day window: 1 a day
    sell(cashier, [{"sku": "SKU00011", "qty": 2}])  # 30 on hand cover a sale of 2 for long
    transfer = manager.post("/api/v1/transfers", json={"transfer_id": new_id(), "from_store": "demo-002",
                                                        "lines": [{"sku": "SKU00013", "qty": 3}]})
    assert transfer.status_code == 201, transfer.text

    body = cashier.get("/api/v1/stock/replenishment").json()
    assert (body["lead_time_days"], body["cover_days"], body["window_days"]) == (2, 7, 28)
    grapes = next(i for i in body["items"] if i["sku"] == "SKU00013")
    assert {k: grapes[k] for k in ("on_hand", "incoming", "sold", "velocity", "days_cover", "suggested")} == {
        "on_hand": 0, "incoming": 3, "sold": 28, "velocity": 1.0, "days_cover": 0.0, "suggested": 6}
    assert "SKU00011" not in {i["sku"] for i in body["items"]}
    assert body["items"][0]["days_cover"] == 0.0

    longer = cashier.get("/api/v1/stock/replenishment", params={"lead_time_days": 5, "cover_days": 14}).json()
    assert next(i for i in longer["items"] if i["sku"] == "SKU00013")["suggested"] == 19 - 3
    negative = cashier.get("/api/v1/stock/replenishment", params={"lead_time_days": -1})
    assert (negative.status_code, negative.json()["code"]) == (400, "invalid_parameter")
