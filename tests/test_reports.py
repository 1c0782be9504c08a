"""Reports: the dashboard and promotion figures of a real hub, the rollups against a recount, and the
year-of-a-busy-store generator on a few small days.

Amounts by hand from edge/seed/demo/items.csv (member M000001 is gold: 10 % off, half-up per line):
  A  2 x cherry tomatoes 990, no member, cash 2000          total 1980
  B  1 x blueberries 1990, gold member: 1990 - 199, card     total 1791
  C  apples label 2112345015002 = 1500 g x 1598/kg, WeChat   total 2397
  D  3 x Coca-Cola can 300, buy 2 get 1 free: 900 - 300      total  600
  return 1 tomato of A                                       refund  990
Day: sales 6768, 4 tickets, basket 1692, 1 member ticket = 2500 bp, refunds 990.
By top-level category: fresh 1980 + 1791 + 2397 = 6168 (9113 bp), snacks & drinks 600 (887 bp).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from edge.reports.history import seed_and_generate

if TYPE_CHECKING:
    from conftest import Hub

TOMATOES, BLUEBERRIES, APPLES_1500G, COLA = "6964985006195", "6953686088258", "2112345015002", "6901611016470"


def sell(till: httpx.Client, lines: list[dict[str, Any]], tender: str, amount: int,
         member_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"sale_id": str(uuid.uuid4()), "till_id": "T1", "lines": lines,
                            "tenders": [{"method": tender, "amount": amount}]}
    if member_id:
        body["member_id"] = member_id
    resp = till.post("/api/v1/sales", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def the_four_sales_and_a_return(hub: Hub) -> list[dict[str, Any]]:
    till = hub.login("cashier")
    sales = [
        sell(till, [{"barcode": TOMATOES, "qty": 2}], "cash", 2000),
        sell(till, [{"barcode": BLUEBERRIES}], "card", 1791, member_id="M000001"),
        sell(till, [{"barcode": APPLES_1500G}], "wechat", 2397),
        sell(till, [{"barcode": COLA, "qty": 3}], "alipay", 600),
    ]
    back = till.post("/api/v1/returns", json={"return_id": str(uuid.uuid4()), "sale_id": sales[0]["sale_id"],
                                              "lines": [{"line_no": 1, "qty": 1}]})
    assert back.status_code == 201, back.text
    assert back.json()["refund_total"] == 990
    return sales


def recount(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Each rollup as stored, and as recomputed from scratch from the sales and returns."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            "daily": conn.execute(
                "SELECT day, sku, qty, weight_g, net, lines, returned_qty, returned_weight_g, refunded"
                " FROM sales_daily_sku ORDER BY day, sku").fetchall(),
            "daily_recount": conn.execute(
                """SELECT day, sku, sum(qty), sum(w), sum(net), sum(n), sum(rq), sum(rw), sum(refund) FROM (
                     SELECT substr(s.created_at, 1, 10) AS day, l.sku, l.qty, coalesce(l.weight_g, 0) AS w,
                            l.net, 1 AS n, 0 AS rq, 0 AS rw, 0 AS refund
                     FROM sale_lines l JOIN sales s ON s.sale_id = l.sale_id
                     UNION ALL
                     SELECT substr(r.created_at, 1, 10), l.sku, 0, 0, 0, 0, rl.qty, coalesce(rl.weight_g, 0), rl.refund
                     FROM return_lines rl JOIN returns r ON r.return_id = rl.return_id
                     JOIN sale_lines l ON l.sale_id = r.sale_id AND l.line_no = rl.line_no)
                   GROUP BY day, sku ORDER BY day, sku""").fetchall(),
            "hourly": conn.execute(
                "SELECT day, hour, tickets, member_tickets, total, refunds FROM sales_hourly ORDER BY day, hour"
            ).fetchall(),
            "hourly_recount": conn.execute(
                """SELECT day, hour, sum(t), sum(m), sum(total), sum(refunds) FROM (
                     SELECT substr(created_at, 1, 10) AS day, CAST(substr(created_at, 12, 2) AS INTEGER) AS hour,
                            1 AS t, member_id IS NOT NULL AS m, total, 0 AS refunds FROM sales
                     UNION ALL
                     SELECT substr(created_at, 1, 10), CAST(substr(created_at, 12, 2) AS INTEGER), 0, 0, 0,
                            refund_total FROM returns)
                   GROUP BY day, hour ORDER BY day, hour""").fetchall(),
            "promotions": conn.execute(
                "SELECT day, rule_id, uses, amount FROM promotion_daily ORDER BY day, rule_id").fetchall(),
            "promotions_recount": conn.execute(
                """SELECT substr(s.created_at, 1, 10) AS day, p.rule_id, count(*), sum(p.amount)
                   FROM sale_promotions p JOIN sales s ON s.sale_id = p.sale_id
                   GROUP BY day, p.rule_id ORDER BY day, p.rule_id""").fetchall(),
        }
    finally:
        conn.close()


def test_dashboard_of_the_day(fresh_hub: Hub) -> None:
    sales = the_four_sales_and_a_return(fresh_hub)
    day = sales[0]["created_at"][:10]
    resp = fresh_hub.login("manager").get("/api/v1/reports/dashboard", params={"day": day})
    assert resp.status_code == 200, resp.text
    d = resp.json()
    assert (d["sales"], d["tickets"], d["average_basket"], d["member_tickets"], d["member_share_bp"],
            d["refunds"]) == (6768, 4, 1692, 1, 2500, 990)
    assert (d["last_week_sales"], d["last_week_tickets"]) == (0, 0)
    assert len(d["hourly"]) == 24 and len(d["hourly_last_week"]) == 24
    expected_hours: dict[int, int] = {}
    for sale in sales:
        hour = int(sale["created_at"][11:13])
        expected_hours[hour] = expected_hours.get(hour, 0) + sale["total"]
    assert {b["hour"]: b["total"] for b in d["hourly"] if b["total"]} == expected_hours
    assert [(c["category_id"], c["name_en"], c["net"], c["share_bp"]) for c in d["categories"]] == [
        ("fresh", "Fresh Produce", 6168, 9113), ("snacks", "Snacks & Drinks", 600, 887)]
    assert [(i["sku"], i["qty"], i["weight_g"], i["net"]) for i in d["top_items"]] == [
        ("SKU00001", 1, 1500, 2397), ("SKU00011", 2, 0, 1980), ("SKU00010", 1, 0, 1791), ("SKU00182", 3, 0, 600)]


def test_dashboard_defaults_to_today_and_refuses_a_bad_day_and_a_cashier(fresh_hub: Hub) -> None:
    manager = fresh_hub.login("manager")
    today = manager.get("/api/v1/reports/dashboard")
    assert today.status_code == 200
    assert (today.json()["tickets"], today.json()["sales"]) == (0, 0)
    bad = manager.get("/api/v1/reports/dashboard", params={"day": "2025-13-01"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_day")
    assert fresh_hub.login("cashier").get("/api/v1/reports/dashboard").status_code == 403


def test_promotion_performance(fresh_hub: Hub) -> None:
    sales = the_four_sales_and_a_return(fresh_hub)
    resp = fresh_hub.login("manager").get("/api/v1/reports/promotions")
    assert resp.status_code == 200, resp.text
    report = {p["rule_id"]: p for p in resp.json()["promotions"]}
    assert sorted(report) == ["demo-cola-b2g1", "demo-dairy-gold-2x", "demo-home-200-30", "demo-snacks-100-10",
                              "demo-welcome-coupon"]
    cola = report["demo-cola-b2g1"]
    assert (cola["kind"], cola["active_now"], cola["started_on"]) == ("buy_n_get_m", True, sales[0]["created_at"][:10])
    assert (cola["uses"], cola["discount"], cola["uses_today"], cola["discount_today"], cola["uses_7d"]) == (
        1, 300, 1, 300, 1)
    assert (cola["covered_items"], cola["covered_net_7d"], cola["covered_net_before"]) == (1, 600, None)
    dairy = report["demo-dairy-gold-2x"]  # the gold member's blueberries are fruit, not dairy
    assert (dairy["kind"], dairy["uses"], dairy["covered_net_7d"]) == ("points_multiplier", 0, 0)
    assert report["demo-welcome-coupon"]["covered_net_7d"] == 6768  # every item


def test_rollups_equal_a_recount_after_sales_returns_and_an_exchange(fresh_hub: Hub) -> None:
    sales = the_four_sales_and_a_return(fresh_hub)
    till = fresh_hub.login("cashier")
    swap = till.post("/api/v1/exchanges", json={
        "exchange_id": str(uuid.uuid4()), "sale_id": sales[2]["sale_id"], "till_id": "T1",
        "return_lines": [{"line_no": 1}], "lines": [{"barcode": BLUEBERRIES}]})
    assert swap.status_code == 201, swap.text
    assert (swap.json()["credit"], swap.json()["refunded"]) == (1990, 407)
    got = recount(fresh_hub.data_dir / "hub.sqlite3")
    assert got["daily"] == got["daily_recount"]
    assert got["hourly"] == got["hourly_recount"]
    assert got["promotions"] == got["promotions_recount"]
    assert sum(row[5] for row in got["hourly"]) == 990 + 2397  # the return, and the exchange's return
    assert sum(row[2] for row in got["hourly"]) == 5  # the exchange's sale is a ticket too


def test_generated_history_is_consistent(tmp_path: Path) -> None:
    stats = seed_and_generate(tmp_path, days=3, tickets_per_day=150, members=40, seed=7)
    db = tmp_path / "hub.sqlite3"
    got = recount(db)
    assert got["daily"] == got["daily_recount"]
    assert got["hourly"] == got["hourly_recount"]
    assert got["promotions"] == got["promotions_recount"]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM sales").fetchone()[0] == stats.tickets > 300
        assert conn.execute("SELECT count(*) FROM sale_lines").fetchone()[0] == stats.lines
        assert conn.execute("SELECT min(substr(created_at, 12, 2)), max(substr(created_at, 12, 2))"
                            " FROM sales").fetchone() == ("07", "21")  # open 7:00-22:00
        assert conn.execute(  # the stock cache equals the ledger for every item
            """SELECT count(*) FROM (SELECT sku, sum(qty) AS q FROM stock_movements GROUP BY sku) m
               JOIN (SELECT sku, sum(on_hand) AS h FROM stock_balance GROUP BY sku) b USING (sku)
               WHERE m.q != b.h""").fetchone()[0] == 0
        assert conn.execute(  # points: cache = ledger = what the batches still hold
            """SELECT count(*) FROM member_balance b
               WHERE b.points != (SELECT coalesce(sum(delta), 0) FROM points_ledger l WHERE l.member_id = b.member_id)
                  OR b.points != (SELECT coalesce(sum(remaining), 0) FROM points_batches p
                                  WHERE p.member_id = b.member_id)""").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sales s WHERE total != (SELECT sum(net) FROM sale_lines l"
                            " WHERE l.sale_id = s.sale_id)").fetchone()[0] == 0
        assert conn.execute("SELECT value FROM counters WHERE name = 'receipt'").fetchone()[0] == stats.tickets
    finally:
        conn.close()
