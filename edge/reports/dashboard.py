"""The day's dashboard: till total, tickets, basket, member share, refunds, hour by hour against the
same weekday a week earlier, sales by top-level category and the best-selling items.

Everything comes from the rollups (one store day is at most 24 `sales_hourly` rows and a few hundred
`sales_daily_sku` rows), so the answer costs the same on the first day and after five years.
"""

from __future__ import annotations

import datetime
import sqlite3

import msgspec

from edge.money import div_half_up

TOP_ITEMS = 10


class HourBucket(msgspec.Struct, frozen=True):
    hour: int
    tickets: int
    member_tickets: int
    total: int
    refunds: int


class CategorySales(msgspec.Struct, frozen=True):
    category_id: str
    name_zh: str
    name_en: str
    net: int
    share_bp: int  # of the day's net sales, basis points


class TopItem(msgspec.Struct, frozen=True):
    sku: str
    name_zh: str
    name_en: str
    unit: str
    qty: int  # units of a counted item; lines of a weighed one
    weight_g: int
    net: int


class Dashboard(msgspec.Struct, frozen=True):
    day: str
    sales: int  # the till total of the day's tickets (after discounts, before refunds)
    tickets: int
    average_basket: int  # sales / tickets, half-up
    member_tickets: int
    member_share_bp: int  # member tickets / tickets, basis points
    refunds: int  # refunded by the day's returns
    last_week_day: str  # the same weekday a week earlier
    last_week_sales: int
    last_week_tickets: int
    hourly: list[HourBucket]  # 24 buckets, hour 0..23
    hourly_last_week: list[HourBucket]
    categories: list[CategorySales]  # top-level categories, by net descending
    top_items: list[TopItem]


def share_bp(part: int, whole: int) -> int:
    return div_half_up(part * 10_000, whole) if whole > 0 else 0


def hours_of(conn: sqlite3.Connection, day: str) -> list[HourBucket]:
    found = {r[0]: HourBucket(*r) for r in conn.execute(
        "SELECT hour, tickets, member_tickets, total, refunds FROM sales_hourly WHERE day = ?", (day,))}
    return [found.get(h, HourBucket(h, 0, 0, 0, 0)) for h in range(24)]


def top_level(conn: sqlite3.Connection) -> dict[str, tuple[str, str, str]]:
    """Each category's top-level ancestor: id -> (top id, name_zh, name_en)."""
    rows = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT category_id, parent_id, name_zh, name_en FROM categories")}
    out: dict[str, tuple[str, str, str]] = {}
    for cat in rows:
        top, seen = cat, {cat}
        while (parent := rows[top][0]) is not None and parent in rows and parent not in seen:
            seen.add(parent)
            top = parent
        out[cat] = (top, rows[top][1], rows[top][2])
    return out


def dashboard(conn: sqlite3.Connection, day: str) -> Dashboard:
    week_before = (datetime.date.fromisoformat(day) - datetime.timedelta(days=7)).isoformat()
    hourly, last_week = hours_of(conn, day), hours_of(conn, week_before)
    sales = sum(b.total for b in hourly)
    tickets = sum(b.tickets for b in hourly)
    members = sum(b.member_tickets for b in hourly)

    tops = top_level(conn)
    by_category: dict[str, int] = {}
    items: list[TopItem] = []
    for sku, category_id, name_zh, name_en, unit, qty, weight_g, net in conn.execute(
            """SELECT d.sku, i.category_id, i.name_zh, i.name_en, i.unit, d.qty, d.weight_g, d.net
               FROM sales_daily_sku d JOIN items i ON i.sku = d.sku WHERE d.day = ? AND d.lines > 0""", (day,)):
        top = tops.get(category_id, (category_id, category_id, category_id))[0]
        by_category[top] = by_category.get(top, 0) + net
        items.append(TopItem(sku, name_zh, name_en, unit, qty, weight_g, net))
    net_total = sum(by_category.values())
    names = {top: (zh, en) for top, zh, en in tops.values()}
    categories = [CategorySales(cat, *names.get(cat, (cat, cat)), net, share_bp(net, net_total))
                  for cat, net in sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))]
    items.sort(key=lambda it: (-it.net, it.sku))
    return Dashboard(
        day=day, sales=sales, tickets=tickets,
        average_basket=div_half_up(sales, tickets) if tickets else 0,
        member_tickets=members, member_share_bp=share_bp(members, tickets),
        refunds=sum(b.refunds for b in hourly),
        last_week_day=week_before, last_week_sales=sum(b.total for b in last_week),
        last_week_tickets=sum(b.tickets for b in last_week),
        hourly=hourly, hourly_last_week=last_week, categories=categories, top_items=items[:TOP_ITEMS],
    )
