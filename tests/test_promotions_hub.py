"""Promotions, coupons, price lists and the 满减 return policy on a real hub.

Over HTTP against `backroom serve` on the seeded demo store, whose promotions are
edge/seed/demo/promotions.json: 日用个护满200减30 (household + personal care), 零食每满100减10,
可口可乐罐装买2赠1 (SKU00182, 300 fen), 金卡会员乳品双倍积分, and the coupon rule 新客券满50减10
(codes WELCOME10, and VIP-M000001 for member M000001 only). In-process tests use a real SQLite file.
Demo prices (fen): SKU00211 laundry liquid 4590, SKU00204 tissues 1990, SKU00206 tissues 2190,
SKU00073 milk 350 (dairy). M000001 is gold (10 % off, points x2), M000003 regular.
"""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hubproc import backroom, seed_demo

from edge.catalog.barcodes import VariableMeasureLayout
from edge.catalog.repository import lookup_barcode
from edge.errors import ApiError
from edge.pricing.price_lists import PriceBoard, local_edit_blocked, set_local_price, utc_text
from edge.promotions.repository import PromotionCache
from edge.sales.basket import quote_lines
from edge.sales.checkout import commit_sale, request_hash
from edge.sales.models import LineIn, SaleRequest, TenderIn
from edge.stock.ledger import Actor
from edge.storage.db import Database

if TYPE_CHECKING:
    from conftest import Hub

HOME = {"rule_id": "demo-home-200-30", "name": "日用个护满200减30", "name_en": "Home & personal care: ¥30 off ¥200",
        "note": "满200减30", "note_en": "¥30 off ¥200"}
HOUSEHOLD = [{"sku": "SKU00211", "qty": 3}, {"sku": "SKU00204", "qty": 4}]  # 13770 + 7960 = 21730
CST = datetime.timezone(datetime.timedelta(hours=8))


def quote(client: httpx.Client, lines: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return client.post("/api/v1/quote", json={"lines": lines, **extra})


def sell(client: httpx.Client, lines: list[dict[str, Any]], total: int, **extra: Any) -> dict[str, Any]:
    body = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines,
            "tenders": [{"method": "card", "amount": total}], **extra}
    resp = client.post("/api/v1/sales", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def give_back(client: httpx.Client, sale_id: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    resp = client.post("/api/v1/returns", json={"return_id": str(uuid.uuid4()), "sale_id": sale_id, "lines": lines})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_demo_promotions_are_listed_in_the_documented_format(hub: Hub) -> None:
    resp = hub.login("cashier").get("/api/v1/promotions")
    assert resp.status_code == 200
    promos = {p["rule_id"]: p for p in resp.json()["promotions"]}
    assert sorted(promos) == ["demo-cola-b2g1", "demo-dairy-gold-2x", "demo-home-200-30", "demo-snacks-100-10",
                              "demo-welcome-coupon"]
    assert promos["demo-home-200-30"]["benefit"] == {"kind": "spend_get_off", "threshold": 20000, "off": 3000}
    assert promos["demo-dairy-gold-2x"]["eligibility"] == {"tiers": ["gold"]}


def test_spend_200_get_30_off_is_shared_over_the_lines(hub: Hub) -> None:
    resp = quote(hub.login("cashier"), HOUSEHOLD)
    assert resp.status_code == 200, resp.text
    q = resp.json()
    # 3000 x 13770/21730 = 1901.06, 3000 x 7960/21730 = 1098.9: 1901 + 1098, the spare fen to the larger line
    assert [(ln["gross"], ln["discount"], ln["net"]) for ln in q["lines"]] == [(13770, 1902, 11868), (7960, 1098, 6862)]
    assert [ln["applied"] for ln in q["lines"]] == [[{**HOME, "amount": 1902}], [{**HOME, "amount": 1098}]]
    assert (q["subtotal"], q["discount"], q["total"]) == (21730, 3000, 18730)
    assert q["hints"] == []


def test_a_basket_just_short_of_a_threshold_gets_a_hint(hub: Hub) -> None:
    q = quote(hub.login("cashier"), [{"sku": "SKU00211", "qty": 3}, {"sku": "SKU00204", "qty": 2}]).json()
    assert q["total"] == 17750
    assert q["hints"] == [{
        "rule_id": "demo-home-200-30", "name": HOME["name"], "name_en": HOME["name_en"], "short_by": 2250,
        "short_qty": 0, "gain": 3000, "text": "再买¥22.50即可享受「日用个护满200减30」，可省¥30.00",
        "text_en": "Add ¥22.50 more to get 'Home & personal care: ¥30 off ¥200' (save ¥30.00)"}]


def test_cola_buy_two_get_one_free(hub: Hub) -> None:
    cashier = hub.login("cashier")
    three = quote(cashier, [{"sku": "SKU00182", "qty": 3}]).json()
    assert (three["lines"][0]["discount"], three["total"]) == (300, 600)
    assert three["lines"][0]["applied"][0]["note"] == "买2赠1"
    two = quote(cashier, [{"sku": "SKU00182", "qty": 2}]).json()
    assert two["total"] == 600
    assert [(h["rule_id"], h["short_qty"], h["gain"], h["text"]) for h in two["hints"]] == [
        ("demo-cola-b2g1", 1, 300, "再买1件即可享受「可口可乐罐装买2赠1」，可省约¥3.00")]


def test_gold_members_earn_double_points_on_dairy(hub: Hub) -> None:
    cashier = hub.login("cashier")
    q = quote(cashier, [{"sku": "SKU00073", "qty": 2}], member_id="M000001").json()
    assert q["lines"][0]["applied"] == [
        {"rule_id": "tier:gold", "name": "金卡会员9折", "name_en": "Gold 10% off", "amount": 70},
        {"rule_id": "demo-dairy-gold-2x", "name": "金卡会员乳品双倍积分",
         "name_en": "Gold members: double points on dairy", "amount": 0, "points_pct": 200, "note": "积分2倍",
         "note_en": "2x points"}]
    assert (q["total"], q["points_earned"]) == (630, 25)  # 6.30 yuan x2 (gold) x2 (dairy) = 25.2
    sale = sell(cashier, [{"sku": "SKU00073", "qty": 2}], 630, member_id="M000001")
    assert sale["points_earned"] == 25


def test_welcome_coupon_takes_10_off_and_its_use_is_recorded_with_the_sale(hub: Hub) -> None:
    cashier = hub.login("cashier")
    lines = [{"sku": "SKU00204", "qty": 3}]  # 5970
    q = quote(cashier, lines, coupon_codes=["WELCOME10"]).json()
    assert q["total"] == 4970
    assert [(a["rule_id"], a["amount"], a["note"]) for a in q["lines"][0]["applied"]] == [
        ("demo-welcome-coupon", 1000, "满50减10")]
    sale = sell(cashier, lines, 4970, coupon_codes=["WELCOME10"])
    assert hub.query("SELECT code, use_no, sale_id FROM coupon_redemptions WHERE sale_id = ?", (sale["sale_id"],)) == [
        ("WELCOME10", 1, sale["sale_id"])]
    assert hub.query("SELECT rule_id, amount, coupon_code FROM sale_promotions WHERE sale_id = ?",
                     (sale["sale_id"],)) == [("demo-welcome-coupon", 1000, "WELCOME10")]
    stored = json.loads(hub.query("SELECT applied FROM sale_lines WHERE sale_id = ?", (sale["sale_id"],))[0][0])
    assert [(a["rule_id"], a["name"], a["name_en"], a["amount"]) for a in stored] == [
        ("demo-welcome-coupon", "新客券满50减10", "Welcome coupon: ¥10 off ¥50", 1000)]


def test_bad_coupons_are_refused_with_a_clear_code_and_commit_nothing(hub: Hub) -> None:
    manager, cashier = hub.login("manager"), hub.login("cashier")
    for coupon in ({"code": "OLD-1", "rule_id": "demo-welcome-coupon", "expires_at": "2020-01-01T00:00:00+08:00"},
                   {"code": "MIN100", "rule_id": "demo-welcome-coupon", "min_spend": 10000}):
        assert manager.post("/api/v1/coupons", json=coupon).status_code == 201
    three = [{"sku": "SKU00204", "qty": 3}]  # 5970
    cases = [
        (three, ["NOPE"], None, "unknown_coupon"),
        (three, ["VIP-M000001"], None, "coupon_not_yours"),
        (three, ["VIP-M000001"], "M000003", "coupon_not_yours"),
        (three, ["OLD-1"], None, "coupon_expired"),
        (three, ["MIN100"], None, "coupon_min_spend"),
        (three, ["WELCOME10", "WELCOME10"], None, "duplicate_coupon"),
        ([{"sku": "SKU00204", "qty": 1}], ["WELCOME10"], None, "coupon_not_applicable"),  # 1990 < 5000
    ]
    for lines, codes, member, code in cases:
        extra: dict[str, Any] = {"coupon_codes": codes}
        if member:
            extra["member_id"] = member
        resp = quote(cashier, lines, **extra)
        assert (resp.status_code, resp.json()["code"]) == (422, code), (codes, resp.text)
    assert quote(cashier, three, coupon_codes=["MIN100"]).json()["short_by"] == 4030
    before = hub.counts(("sales", "journal", "outbox", "coupon_redemptions", "sale_promotions"))
    refused = cashier.post("/api/v1/sales", json={"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": three,
                                                  "coupon_codes": ["OLD-1"],
                                                  "tenders": [{"method": "card", "amount": 4970}]})
    assert (refused.status_code, refused.json()["code"]) == (422, "coupon_expired")
    assert hub.counts(tuple(before)) == before


def test_a_single_use_coupon_cannot_be_redeemed_twice(hub: Hub) -> None:
    manager, cashier = hub.login("manager"), hub.login("cashier")
    promo = {"rule_id": "test-once-5", "name": "一次性立减5元", "name_en": "One-off ¥5 off",
             "eligibility": {"coupon": True}, "benefit": {"kind": "amount_off", "amount": 500}}
    created = manager.post("/api/v1/promotions", json=promo)
    assert created.status_code == 201, created.text
    assert manager.post("/api/v1/coupons", json={"code": "ONCE-1", "rule_id": "test-once-5"}).status_code == 201
    lines = [{"sku": "SKU00204", "qty": 1}]
    assert quote(cashier, lines, coupon_codes=["ONCE-1"]).json()["total"] == 1490  # the new rule is live at once
    sale = sell(cashier, lines, 1490, coupon_codes=["ONCE-1"])
    again = quote(cashier, lines, coupon_codes=["ONCE-1"])
    assert (again.status_code, again.json()["code"]) == (422, "coupon_used")
    second = cashier.post("/api/v1/sales", json={
        "sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines, "coupon_codes": ["ONCE-1"],
        "tenders": [{"method": "card", "amount": 1490}]})
    assert (second.status_code, second.json()["code"]) == (422, "coupon_used")
    assert hub.query("SELECT use_no, sale_id FROM coupon_redemptions WHERE code = 'ONCE-1'") == [(1, sale["sale_id"])]


def test_creating_promotions_is_checked(hub: Hub) -> None:
    manager, cashier = hub.login("manager"), hub.login("cashier")
    good = {"rule_id": "test-x", "name": "测试", "name_en": "Test",
            "benefit": {"kind": "percent_off", "discount_bp": 500}}
    denied = cashier.post("/api/v1/promotions", json=good)
    assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")
    cases = [
        ({**good, "colour": "red"}, 400, "invalid_field"),  # unknown fields are refused, not ignored
        ({**good, "benefit": {"kind": "percent_off", "discount_bp": 10001}}, 400, "invalid_field"),
        ({**good, "benefit": {"kind": "half_price"}}, 400, "invalid_field"),
        ({**good, "rule_id": "tier:gold"}, 422, "reserved_rule_id"),
        ({**good, "rule_id": "demo-cola-b2g1"}, 409, "rule_exists"),
        ({**good, "eligibility": {"hours": [{"start": "21:00", "end": "17:00"}]}}, 400, "invalid_field"),
    ]
    for body, status, code in cases:
        resp = manager.post("/api/v1/promotions", json=body)
        assert (resp.status_code, resp.json()["code"]) == (status, code), (body, resp.text)
    unknown_rule = manager.post("/api/v1/coupons", json={"code": "X1", "rule_id": "no-such-rule"})
    assert (unknown_rule.status_code, unknown_rule.json()["code"]) == (422, "unknown_rule")


def test_a_per_member_limit_counts_across_sales(hub: Hub) -> None:
    manager, cashier = hub.login("manager"), hub.login("cashier")
    promo = {"rule_id": "test-member-once", "name": "会员每日一次半价", "name_en": "Half price once a day",
             "items": {"skus": ["SKU00206"]}, "benefit": {"kind": "percent_off", "discount_bp": 5000},
             "limits": {"per_member": 1, "period": "day"}}
    assert manager.post("/api/v1/promotions", json=promo).status_code == 201
    lines = [{"sku": "SKU00206", "qty": 1}]  # 2190
    first = quote(cashier, lines, member_id="M000003").json()
    assert first["total"] == 1095
    sell(cashier, lines, 1095, member_id="M000003")
    second = quote(cashier, lines, member_id="M000003").json()
    assert (second["total"], second["lines"][0]["applied"]) == (2190, [])
    anonymous = quote(cashier, lines).json()
    assert anonymous["total"] == 2190  # a per-member limit needs a member to count against
    today = hub.query("SELECT period FROM promotion_usage WHERE rule_id = 'test-member-once'")
    assert today == [(datetime.datetime.now(CST).date().isoformat(),)]


def test_a_return_refunds_the_stored_net_by_default(hub: Hub) -> None:
    cashier = hub.login("cashier")
    sale = sell(cashier, HOUSEHOLD, 18730)
    back = give_back(cashier, sale["sale_id"], [{"line_no": 1, "qty": 1}])
    assert (back["refund_total"], back["clawback"], back["lines"][0]["refund"]) == (3956, 0, 3956)  # 11868 / 3


def test_the_clawback_option_takes_back_a_spend_discount_the_kept_items_lost(hub_factory: Any) -> None:
    hub = hub_factory(return_clawback=True)
    cashier = hub.login("cashier")
    sale = sell(cashier, HOUSEHOLD, 18730)
    # Keep 2 x 4590 + 4 x 1990 = 17140 < 20000: the 1268 + 1098 of 满减 still on them comes back.
    first = give_back(cashier, sale["sale_id"], [{"line_no": 1, "qty": 1}])
    assert (first["lines"][0]["refund"], first["clawback"], first["refund_total"]) == (3956, 2366, 1590)
    assert 18730 - 1590 == 2 * 4590 + 4 * 1990  # what they keep, they paid full price for
    rest = give_back(cashier, sale["sale_id"], [{"line_no": 1, "qty": 2}, {"line_no": 2, "qty": 4}])
    assert ([ln["refund"] for ln in rest["lines"]], rest["clawback"], rest["refund_total"]) == ([7912, 6862], -2366,
                                                                                               17140)
    assert first["refund_total"] + rest["refund_total"] == sale["total"]
    assert hub.query("SELECT amount FROM return_clawbacks ORDER BY rowid") == [(2366,), (-2366,)]
    assert hub.backroom("journal", "verify").returncode == 0


# -- in process, on a real SQLite file -------------------------------------------------------------------

@pytest.fixture
def seeded_db(tmp_path: Path) -> Any:
    seed_demo(tmp_path)
    db = Database(tmp_path / "hub.sqlite3")
    yield db
    db.close()


def _at(day: int, month: int = 1) -> datetime.datetime:
    return datetime.datetime(2025, month, day, 12, 0, tzinfo=CST)


def test_price_lists_decide_the_price_in_force(seeded_db: Database) -> None:
    def setup(conn: Any) -> None:
        for list_id, store, tier, start, until, price in [
            ("hq-chain", None, None, _at(1), _at(1, 2), 1500),
            ("hq-store", "demo-001", None, _at(10), None, 1400),
            ("hq-other-store", "demo-002", None, _at(1), None, 900),
            ("hq-gold", None, "gold", _at(1), None, 1200),
        ]:
            conn.execute("""INSERT INTO price_lists (list_id, store_id, tier, effective_from, effective_until,
                                created_at) VALUES (?, ?, ?, ?, ?, 'now')""",
                         (list_id, store, tier, utc_text(start), utc_text(until) if until else None))
            conn.execute("INSERT INTO price_list_items (list_id, sku, price) VALUES (?, 'SKU00204', ?)",
                         (list_id, price))

    seeded_db.write_sync(setup)
    conn = seeded_db.reader()
    line = [LineIn(sku="SKU00204", qty=2)]

    def unit_price(at: datetime.datetime, member: str | None = None) -> tuple[int, int]:
        q = quote_lines(conn, VariableMeasureLayout(), line, member, at=at)
        return q.lines[0].unit_price, q.total

    assert unit_price(datetime.datetime(2024, 12, 31, 23, 59, tzinfo=CST)) == (1990, 3980)  # before any list
    assert unit_price(_at(5)) == (1500, 3000)  # the chain list
    assert unit_price(_at(15)) == (1400, 2800)  # this store's override wins over the chain list
    assert unit_price(_at(5, 2)) == (1400, 2800)  # the chain list ended; the store list is open-ended
    code = conn.execute("SELECT code FROM barcodes WHERE sku = 'SKU00204'").fetchone()[0]
    scanned = lookup_barcode(conn, code, VariableMeasureLayout(), PriceBoard("demo-001", None, _at(15)))
    assert scanned.price == 1400  # a lookup shows the price in force, not the catalog's 1990
    gold = quote_lines(conn, VariableMeasureLayout(), line, "M000001", at=_at(15))
    assert [(a.rule_id, a.amount) for a in gold.lines[0].applied] == [("member_price", 400), ("tier:gold", 240)]
    assert gold.total == 2160  # 2800 -> member price 2400 -> 10 % off

    assert local_edit_blocked(conn, "SKU00204", "demo-001", _at(15)) == "hq-store"
    assert local_edit_blocked(conn, "SKU00205", "demo-001", _at(15)) is None
    seeded_db.write_sync(lambda c: c.execute("UPDATE price_lists SET local_edit = 1 WHERE list_id = 'hq-store'"))
    assert local_edit_blocked(conn, "SKU00204", "demo-001", _at(15)) is None
    seeded_db.write_sync(lambda c: set_local_price(c, "SKU00204", 1300, "demo-001", _at(16)))
    assert unit_price(_at(17)) == (1300, 2600)


def test_a_coupon_redeemed_by_another_till_meanwhile_refuses_the_sale(seeded_db: Database) -> None:
    conn, cache = seeded_db.reader(), PromotionCache()
    lines = [LineIn(sku="SKU00204", qty=3)]  # 5970, gold: 5373, coupon 10 off: 4373
    quotes = [quote_lines(conn, VariableMeasureLayout(), lines, "M000001", ["VIP-M000001"], book=cache.book(conn))
              for _ in range(2)]
    assert [q.total for q in quotes] == [4373, 4373]
    at = datetime.datetime.now(CST).isoformat()

    def commit(q: Any) -> Any:
        req = SaleRequest(sale_id=uuid.uuid4(), till_id="T1", lines=lines, member_id="M000001",
                          coupon_codes=["VIP-M000001"], tenders=[TenderIn("card", 4373)])
        return seeded_db.write_sync(
            lambda c: commit_sale(c, req, request_hash(req), q, Actor("U-cashier", "T1"), at, at[:10], "DEMO001"))

    commit(quotes[0])
    sales = seeded_db.reader().execute("SELECT count(*) FROM sales").fetchone()[0]
    with pytest.raises(ApiError) as refused:
        commit(quotes[1])
    assert (refused.value.status, refused.value.code) == (409, "coupon_used")
    assert seeded_db.reader().execute("SELECT count(*) FROM sales").fetchone()[0] == sales


def test_the_rule_book_is_reloaded_only_when_the_version_moves(seeded_db: Database) -> None:
    conn, cache = seeded_db.reader(), PromotionCache()
    first = cache.book(conn)
    assert cache.book(conn) is first
    seeded_db.write_sync(lambda c: c.execute(
        "UPDATE settings SET value = CAST(value AS INTEGER) + 1 WHERE key = 'promotions_version'"))
    assert cache.book(conn) is not first


def test_bench_quote_prints_its_figures_as_json() -> None:
    done = backroom("bench", "quote", "--json", "--seconds", "0.5")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert (figures["kind"], figures["active_rules"], figures["lines"]) == ("quote", 200, 30)
    assert figures["rules_applied"] > 10 and figures["quotes"] >= 100
    assert 0 < figures["p50_ms"] < 3
