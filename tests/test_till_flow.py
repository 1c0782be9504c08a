"""The contract's acceptance story, told by a till over HTTP against a real `backroom serve`.

Expected amounts are worked out by hand from edge/seed/demo/items.csv:
  SKU00010 blueberries, each, 1990, EAN 6953686088258, VAT 9 %, stock 21, low 6 / high 40
  SKU00011 cherry tomatoes, each, 990, VAT 9 %
  SKU00012 navel oranges, each, 2990
  SKU00013 grapes, each, 2990, stock 28, low 6 / high 40, no batches
  SKU00001 Fuji apples, kg, 1598 per kg, PLU 12345: label 2112345015002 = 1500 g = 2397 fen
Member M000001 is gold: 10 % off every line (half-up per line), points x2 (1 point per yuan).
  3 x blueberries: gross 5970, discount 597, net 5373, tax 5373 - round(5373/1.09) = 444
  apples 1500 g:   gross 2397, discount 240 (239.7), net 2157, tax 178
  1 x tomatoes:    gross 990,  discount 99,  net 891,  tax 74
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from conftest import Hub

BLUEBERRIES = "6953686088258"
APPLES_1500G = "2112345015002"
GOLD = {"rule_id": "tier:gold", "name": "金卡会员9折", "name_en": "Gold 10% off"}
BASKET = [{"barcode": BLUEBERRIES, "qty": 3}, {"barcode": APPLES_1500G}]


def new_id() -> str:
    return str(uuid.uuid4())


def on_hand(client: httpx.Client, sku: str) -> int:
    resp = client.get(f"/api/v1/stock/{sku}")
    assert resp.status_code == 200, resp.text
    return int(resp.json()["on_hand"])


def member(client: httpx.Client, member_id: str = "M000001") -> dict[str, Any]:
    resp = client.get(f"/api/v1/members/{member_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def sell(client: httpx.Client, lines: list[dict[str, Any]], tenders: list[dict[str, Any]],
         member_id: str | None = "M000001", till_id: str = "T1") -> dict[str, Any]:
    body: dict[str, Any] = {"sale_id": new_id(), "till_id": till_id, "lines": lines, "tenders": tenders}
    if member_id:
        body["member_id"] = member_id
    resp = client.post("/api/v1/sales", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def give_back(client: httpx.Client, sale_id: str, lines: list[dict[str, Any]]) -> httpx.Response:
    return client.post("/api/v1/returns", json={"return_id": new_id(), "sale_id": sale_id, "lines": lines})


def test_cashier_logs_in_with_a_pin_at_a_till(hub: Hub) -> None:
    resp = httpx.post(f"{hub.base_url}/api/v1/auth/login",
                      json={"username": "cashier", "pin": "1234", "till_id": "T1"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["role"] == "cashier"
    assert body["expires_at"].endswith("+00:00")
    me = httpx.get(f"{hub.base_url}/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json() == {"user_id": "U-cashier", "username": "cashier", "role": "cashier", "till_id": "T1"}


def test_lookup_of_a_plain_ean13(hub: Hub) -> None:
    resp = hub.login("cashier").get("/api/v1/items/lookup", params={"barcode": BLUEBERRIES})
    assert resp.status_code == 200
    item = resp.json()
    assert (item["sku"], item["unit"], item["price"], item["barcodes"]) == ("SKU00010", "each", 1990, [BLUEBERRIES])
    assert "weight_g" not in item


def test_lookup_of_a_weighed_label_embeds_weight_and_line_price(hub: Hub) -> None:
    resp = hub.login("cashier").get("/api/v1/items/lookup", params={"barcode": APPLES_1500G})
    assert resp.status_code == 200
    item = resp.json()
    assert (item["sku"], item["unit"], item["price"]) == ("SKU00001", "kg", 1598)
    assert item["weight_g"] == 1500
    assert item["line_price"] == 2397


def test_lookup_of_a_price_label_embeds_the_price(hub: Hub) -> None:
    label = "2330001012756"  # prefix 23: item 30001 (SKU00051, 15.90 a box), this box priced 12.75
    till = hub.login("cashier")
    item = till.get("/api/v1/items/lookup", params={"barcode": label}).json()
    assert (item["sku"], item["price"], item["item_price"], item["line_price"]) == ("SKU00051", 1275, 1590, 1275)
    quote = till.post("/api/v1/quote", json={"lines": [{"barcode": label}]}).json()
    assert [(ln["qty"], ln["unit_price"], ln["gross"]) for ln in quote["lines"]] == [(1, 1275, 1275)]


def test_quote_for_a_gold_member_takes_ten_percent_off_each_line(hub: Hub) -> None:
    resp = hub.login("cashier").post("/api/v1/quote", json={
        "lines": [*BASKET, {"sku": "SKU00011", "qty": 1}], "member_id": "M000001"})
    assert resp.status_code == 200, resp.text
    quote = resp.json()
    got = [(ln["sku"], ln["qty"], ln["weight_g"], ln["unit_price"], ln["gross"], ln["discount"], ln["net"], ln["tax"])
           for ln in quote["lines"]]
    assert got == [
        ("SKU00010", 3, None, 1990, 5970, 597, 5373, 444),
        ("SKU00001", 1, 1500, 1598, 2397, 240, 2157, 178),
        ("SKU00011", 1, None, 990, 990, 99, 891, 74),
    ]
    assert [ln["applied"] for ln in quote["lines"]] == [
        [{**GOLD, "amount": 597}], [{**GOLD, "amount": 240}], [{**GOLD, "amount": 99}]]
    assert (quote["subtotal"], quote["discount"], quote["total"], quote["tax"]) == (9357, 936, 8421, 696)
    assert quote["points_earned"] == 168  # 84.21 yuan, x2 for gold


def test_quote_without_a_member_has_no_discount(hub: Hub) -> None:
    quote = hub.login("cashier").post("/api/v1/quote", json={"lines": BASKET}).json()
    assert [(ln["gross"], ln["discount"], ln["net"], ln["applied"]) for ln in quote["lines"]] == [
        (5970, 0, 5970, []), (2397, 0, 2397, [])]
    assert (quote["total"], quote["points_earned"]) == (8367, 0)


def test_split_tender_sale_gives_cash_change_and_a_retry_commits_nothing(hub: Hub) -> None:
    cashier = hub.login("cashier")
    blueberries, apples, points = on_hand(cashier, "SKU00010"), on_hand(cashier, "SKU00001"), member(cashier)["points"]
    body = {"sale_id": new_id(), "till_id": "T1", "lines": BASKET, "member_id": "M000001",
            "tenders": [{"method": "card", "amount": 5000, "reference": "POS-1"}, {"method": "cash", "amount": 3000}]}
    first = cashier.post("/api/v1/sales", json=body)
    assert first.status_code == 201, first.text
    sale = first.json()
    assert sale["sale_id"] == body["sale_id"]
    assert sale["receipt_no"].startswith("DEMO001-")
    assert (sale["subtotal"], sale["discount"], sale["total"], sale["tax"]) == (8367, 837, 7530, 622)
    assert (sale["tendered"], sale["change"]) == (8000, 470)
    assert sale["points_earned"] == 150
    assert sale["member"]["points"] == points + 150
    assert hub.query("SELECT hash FROM journal WHERE seq = ?", (sale["journal_seq"],)) == [(sale["journal_hash"],)]
    assert on_hand(cashier, "SKU00010") == blueberries - 3
    assert on_hand(cashier, "SKU00001") == apples - 1500

    before = hub.counts(("journal", "outbox", "sales", "sale_lines", "stock_movements", "points_ledger"))
    again = cashier.post("/api/v1/sales", json=body)
    assert again.status_code == 201
    assert again.content == first.content
    assert hub.counts(tuple(before)) == before
    assert on_hand(cashier, "SKU00010") == blueberries - 3

    conflict = cashier.post("/api/v1/sales", json={**body, "tenders": [{"method": "cash", "amount": 8000}]})
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "id_conflict"
    assert hub.counts(tuple(before)) == before

    stored = cashier.get(f"/api/v1/sales/{body['sale_id']}")
    assert stored.status_code == 200
    assert stored.content == first.content


def test_concurrent_retries_of_one_sale_commit_it_once(hub: Hub) -> None:
    cashier = hub.login("cashier")
    blueberries = on_hand(cashier, "SKU00010")
    body = {"sale_id": new_id(), "till_id": "T1", "lines": [{"barcode": BLUEBERRIES, "qty": 2}],
            "tenders": [{"method": "wechat", "amount": 3980, "reference": "WX-RETRY"}]}
    before = hub.counts()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: httpx.post(f"{hub.base_url}/api/v1/sales", json=body,
                                                     headers=cashier.headers, timeout=30), range(8)))
    assert [a.status_code for a in answers] == [201] * 8
    assert len({a.content for a in answers}) == 1
    assert hub.counts() == {"journal": before["journal"] + 1, "outbox": before["outbox"] + 1,
                            "sales": before["sales"] + 1}
    assert on_hand(cashier, "SKU00010") == blueberries - 2


def test_partial_returns_refund_each_units_share_of_the_discounted_net(hub: Hub) -> None:
    cashier = hub.login("cashier")
    sale = sell(cashier, BASKET, [{"method": "card", "amount": 7530}])
    assert [(ln["line_no"], ln["net"]) for ln in sale["lines"]] == [(1, 5373), (2, 2157)]
    blueberries, apples = on_hand(cashier, "SKU00010"), on_hand(cashier, "SKU00001")

    one = give_back(cashier, sale["sale_id"], [{"line_no": 1, "qty": 1}])
    assert one.status_code == 201, one.text
    first = one.json()
    assert [(ln["line_no"], ln["qty"], ln["refund"]) for ln in first["lines"]] == [(1, 1, 1791)]
    assert first["refund_total"] == 1791
    assert first["refunds"] == [{"method": "card", "amount": 1791}]
    assert first["points_reversed"] == 36  # round(150 * 1791 / 7530)
    assert on_hand(cashier, "SKU00010") == blueberries + 1

    # 250 g of 1500 g: round(2157 * 250 / 1500) = round(359.5) = 360; the other 1250 g then get
    # 2157 - 360 = 1797, where rounding each return on its own would give 1798 and refund a fen too many.
    two = give_back(cashier, sale["sale_id"], [{"line_no": 1, "qty": 2}, {"line_no": 2, "weight_g": 250}])
    assert two.status_code == 201, two.text
    second = two.json()
    assert [(ln["line_no"], ln["qty"], ln["weight_g"], ln["refund"]) for ln in second["lines"]] == [
        (1, 2, None, 3582), (2, 1, 250, 360)]
    assert second["points_reversed"] == 78  # round(150 * 5733 / 7530) - 36
    assert on_hand(cashier, "SKU00010") == blueberries + 3
    assert on_hand(cashier, "SKU00001") == apples + 250

    three = give_back(cashier, sale["sale_id"], [{"line_no": 2, "weight_g": 1250}])
    assert three.status_code == 201, three.text
    third = three.json()
    assert [(ln["line_no"], ln["weight_g"], ln["refund"]) for ln in third["lines"]] == [(2, 1250, 1797)]
    assert third["points_reversed"] == 36
    assert 1791 + 3582 == 5373 and 360 + 1797 == 2157
    assert first["refund_total"] + second["refund_total"] + third["refund_total"] == 7530
    assert on_hand(cashier, "SKU00001") == apples + 1500

    before = hub.counts(("journal", "outbox", "returns", "stock_movements"))
    for lines in ([{"line_no": 1, "qty": 1}], [{"line_no": 2, "weight_g": 1}]):
        over = give_back(cashier, sale["sale_id"], lines)
        assert over.status_code == 422, over.text
        assert over.json()["code"] == "over_return"
        assert over.json()["returnable"] == 0
    assert hub.counts(tuple(before)) == before


def test_over_return_in_one_request_is_refused(hub: Hub) -> None:
    cashier = hub.login("cashier")
    sale = sell(cashier, [{"barcode": BLUEBERRIES, "qty": 3}], [{"method": "alipay", "amount": 5373}])
    before = hub.counts(("journal", "outbox", "returns"))
    over = give_back(cashier, sale["sale_id"], [{"line_no": 1, "qty": 4}])
    assert over.status_code == 422
    assert (over.json()["code"], over.json()["returnable"]) == ("over_return", 3)
    assert hub.counts(tuple(before)) == before


def test_a_retried_return_refunds_once(hub: Hub) -> None:
    cashier = hub.login("cashier")
    sale = sell(cashier, [{"barcode": BLUEBERRIES, "qty": 3}], [{"method": "cash", "amount": 6000}])
    assert sale["change"] == 627
    body = {"return_id": new_id(), "sale_id": sale["sale_id"], "lines": [{"line_no": 1, "qty": 1}]}
    first = cashier.post("/api/v1/returns", json=body)
    assert first.status_code == 201
    assert first.json()["refunds"] == [{"method": "cash", "amount": 1791}]
    before = hub.counts(("journal", "outbox", "returns", "stock_movements", "points_ledger"))
    again = cashier.post("/api/v1/returns", json=body)
    assert (again.status_code, again.content) == (201, first.content)
    conflict = cashier.post("/api/v1/returns", json={**body, "lines": [{"line_no": 1, "qty": 2}]})
    assert (conflict.status_code, conflict.json()["code"]) == (409, "id_conflict")
    assert hub.counts(tuple(before)) == before


def test_stored_value_and_points_pay_exactly_what_the_member_holds(fresh_hub: Hub) -> None:
    cashier = fresh_hub.login("cashier")
    assert (member(cashier)["balance"], member(cashier)["points"]) == (20000, 5000)

    topup = {"topup_id": new_id(), "amount": 5000, "method": "wechat", "reference": "WX-1"}
    first = cashier.post("/api/v1/members/M000001/topups", json=topup)
    assert first.status_code == 201, first.text
    assert (first.json()["amount"], first.json()["balance"]) == (5000, 25000)
    again = cashier.post("/api/v1/members/M000001/topups", json=topup)
    assert (again.status_code, again.content) == (201, first.content)
    assert member(cashier)["balance"] == 25000

    paid = sell(cashier, [{"sku": "SKU00011", "qty": 1}], [{"method": "stored_value", "amount": 891}])
    assert (paid["total"], paid["change"], paid["points_earned"]) == (891, 0, 17)
    assert (paid["member"]["balance"], paid["member"]["points"]) == (24109, 5017)
    assert (member(cashier)["balance"], member(cashier)["points"]) == (24109, 5017)

    before = fresh_hub.counts(("journal", "outbox", "sales", "value_ledger", "points_ledger", "stock_movements"))
    short = cashier.post("/api/v1/sales", json={
        "sale_id": new_id(), "till_id": "T1", "member_id": "M000001", "lines": [{"sku": "SKU00012", "qty": 10}],
        "tenders": [{"method": "stored_value", "amount": 26910}]})  # 29900 less 10 %
    assert short.status_code == 402, short.text
    assert (short.json()["code"], short.json()["available"]) == ("insufficient_balance", 24109)
    assert fresh_hub.counts(tuple(before)) == before
    assert member(cashier)["balance"] == 24109

    by_points = sell(cashier, [{"sku": "SKU00011", "qty": 1}], [{"method": "points", "amount": 891}])
    assert (by_points["points_redeemed"], by_points["points_earned"]) == (891, 0)
    assert (by_points["member"]["points"], by_points["member"]["balance"]) == (4126, 24109)
    assert (member(cashier)["points"], member(cashier)["balance"]) == (4126, 24109)

    mixed = sell(cashier, [{"sku": "SKU00011", "qty": 1}],
                 [{"method": "points", "amount": 400}, {"method": "stored_value", "amount": 400},
                  {"method": "cash", "amount": 100}])
    assert (mixed["tendered"], mixed["change"]) == (900, 9)
    assert mixed["points_earned"] == 9  # the 4.91 yuan not paid by points, x2 for gold
    assert (mixed["member"]["points"], mixed["member"]["balance"]) == (3735, 23709)
    verify = fresh_hub.backroom("journal", "verify")
    assert verify.returncode == 0


def test_manager_receives_and_counts_stock_raising_and_clearing_alerts(hub: Hub) -> None:
    manager = hub.login("manager")
    assert on_hand(manager, "SKU00013") == 28

    def open_alerts(kind: str) -> list[tuple[str, int, int]]:
        resp = manager.get("/api/v1/stock/alerts", params={"kind": kind})
        assert resp.status_code == 200
        return [(a["sku"], a["on_hand"], a["threshold"]) for a in resp.json()["alerts"] if a["sku"] == "SKU00013"]

    assert open_alerts("low") == [] and open_alerts("high") == []

    count = manager.post("/api/v1/stock/adjustments", json={
        "adjustment_id": new_id(), "sku": "SKU00013", "kind": "count", "qty": 4, "reason": "shelf count"})
    assert count.status_code == 201, count.text
    assert count.json()["on_hand"] == {"SKU00013": 4}
    assert open_alerts("low") == [("SKU00013", 4, 6)]
    view = manager.get("/api/v1/stock/SKU00013").json()
    assert view["thresholds"] == {"low": 6, "high": 40}
    assert [(a["kind"], a["on_hand"]) for a in view["alerts"]] == [("low", 4)]

    receipt = {"receipt_id": new_id(), "supplier": "Shanghai Fresh",
               "lines": [{"sku": "SKU00013", "qty": 30, "lot": "L-T-0001", "expiry": "2030-01-31"}]}
    received = manager.post("/api/v1/stock/receipts", json=receipt)
    assert received.status_code == 201, received.text
    assert received.json()["on_hand"] == {"SKU00013": 34}
    assert open_alerts("low") == []
    batches = {(b["lot"], b["expiry"], b["on_hand"]) for b in manager.get("/api/v1/stock/SKU00013").json()["batches"]}
    assert ("L-T-0001", "2030-01-31", 30) in batches

    before = hub.counts(("journal", "outbox", "stock_movements"))
    again = manager.post("/api/v1/stock/receipts", json=receipt)
    assert (again.status_code, again.content) == (201, received.content)
    assert hub.counts(tuple(before)) == before

    more = manager.post("/api/v1/stock/receipts", json={
        "receipt_id": new_id(), "lines": [{"sku": "SKU00013", "qty": 10}]})
    assert more.json()["on_hand"] == {"SKU00013": 44}
    assert open_alerts("high") == [("SKU00013", 44, 40)]

    damaged = manager.post("/api/v1/stock/adjustments", json={
        "adjustment_id": new_id(), "sku": "SKU00013", "kind": "adjustment", "qty": -5, "reason": "damaged"})
    assert damaged.status_code == 201, damaged.text
    assert damaged.json()["on_hand"] == {"SKU00013": 39}
    assert open_alerts("high") == []

    cashier = hub.login("cashier")
    sell(cashier, [{"sku": "SKU00013", "qty": 34}], [{"method": "card", "amount": 91494}])  # 101660 less 10 %
    assert on_hand(cashier, "SKU00013") == 5
    assert open_alerts("low") == [("SKU00013", 5, 6)]


def test_the_journal_verifies_after_all_of_the_above(hub: Hub) -> None:
    journal_rows = hub.counts(("journal",))["journal"]
    assert journal_rows > 10  # the seed plus every sale, return and stock change above
    verdict = hub.login("manager").get("/api/v1/journal/verify").json()
    assert (verdict["ok"], verdict["count"]) == (True, journal_rows)
    verify = hub.backroom("journal", "verify")
    assert verify.returncode == 0
    assert f"journal intact: {journal_rows} records" in verify.stdout
