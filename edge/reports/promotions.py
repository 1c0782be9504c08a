"""How each promotion does: its window, whether it runs now, the uses and discount it gave (in all,
today, the last 7 days) and the net sales of the items it covers, over the last 7 days and over the
7 days before it started (when the store has sales from then).

Covered items are the rule's item range resolved against the catalog (skus, categories with their
sub-categories, brands, tags, less exclusions), as the engine matches lines. Sales come from
`sales_daily_sku`, uses from `promotion_daily` and `promotion_totals`: a handful of indexed reads
whatever the store's history.
"""

from __future__ import annotations

import datetime
import sqlite3

import msgspec

from edge.promotions.rules import Eligibility, ItemRange, promotion_decoder

WEEK = 7


class PromotionStats(msgspec.Struct, frozen=True):
    rule_id: str
    name: str
    name_en: str
    kind: str  # the benefit's kind: percent_off, spend_get_off, ...
    enabled: bool  # promotions.active
    active_now: bool  # enabled and inside its window at this moment
    starts_at: str | None
    ends_at: str | None
    weekdays: list[int]
    hours: list[str]  # "17:00-21:00"
    started_on: str  # the store day it started: its starts_at, else the day it was created
    uses: int  # sales it gave something to, in all
    discount: int  # fen it gave, in all
    uses_today: int
    discount_today: int
    uses_7d: int
    discount_7d: int
    covered_items: int
    covered_net_7d: int
    covered_net_before: int | None  # the 7 days before it started; None without sales then


class PromotionsReport(msgspec.Struct, frozen=True):
    today: str
    promotions: list[PromotionStats]


class _Item(msgspec.Struct, frozen=True):
    sku: str
    category: str
    brand: str
    tags: frozenset[str]


def in_window(e: Eligibility, now: datetime.datetime) -> bool:
    if (e.starts_at is not None and now < e.starts_at) or (e.ends_at is not None and now >= e.ends_at):
        return False
    if e.weekdays and now.isoweekday() not in e.weekdays:
        return False
    if e.hours:
        clock = now.strftime("%H:%M")
        return any(w.start <= clock < w.end for w in e.hours)
    return True


def _descendants(conn: sqlite3.Connection) -> dict[str, set[str]]:
    parents = {r[0]: r[1] for r in conn.execute("SELECT category_id, parent_id FROM categories")}
    out: dict[str, set[str]] = {c: {c} for c in parents}
    for cat in parents:
        seen, up = {cat}, parents.get(cat)
        while up is not None and up not in seen:
            out.setdefault(up, {up}).add(cat)
            seen.add(up)
            up = parents.get(up)
    return out


def covered(items: list[_Item], rng: ItemRange, descendants: dict[str, set[str]]) -> set[str]:
    """Skus in the range: any include matches (none given: every item), minus exclusions."""
    cats = set().union(*(descendants.get(c, {c}) for c in rng.categories)) if rng.categories else set()
    ex_cats = set().union(*(descendants.get(c, {c}) for c in rng.exclude_categories)) \
        if rng.exclude_categories else set()
    skus, brands, tags, ex_skus = set(rng.skus), set(rng.brands), set(rng.tags), set(rng.exclude_skus)
    out = set()
    for it in items:
        if it.sku in ex_skus or it.category in ex_cats:
            continue
        if rng.everything or it.sku in skus or it.category in cats or (it.brand and it.brand in brands) \
                or not tags.isdisjoint(it.tags):
            out.add(it.sku)
    return out


def _net_by_sku(conn: sqlite3.Connection, first: str, last: str) -> dict[str, int]:
    return {r[0]: r[1] for r in conn.execute(
        "SELECT sku, sum(net) FROM sales_daily_sku WHERE day BETWEEN ? AND ? GROUP BY sku", (first, last))}


def _day(d: datetime.date, back: int) -> str:
    return (d - datetime.timedelta(days=back)).isoformat()


def promotions_performance(conn: sqlite3.Connection, now: datetime.datetime) -> PromotionsReport:
    """`now` is store-local (the hub clock); its date is the store's today."""
    today = now.date()
    items = [_Item(r[0], r[1], r[2], frozenset(msgspec.json.decode(r[3], type=list[str]) if r[3] else ()))
             for r in conn.execute("SELECT sku, category_id, brand, tags FROM items")]
    descendants = _descendants(conn)
    last_week = _net_by_sku(conn, _day(today, WEEK - 1), today.isoformat())
    totals = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT rule_id, uses, amount FROM promotion_totals")}
    daily: dict[str, list[int]] = {}
    for rule_id, day, uses, amount in conn.execute(
            "SELECT rule_id, day, uses, amount FROM promotion_daily WHERE day BETWEEN ? AND ?",
            (_day(today, WEEK - 1), today.isoformat())):
        acc = daily.setdefault(rule_id, [0, 0, 0, 0])
        acc[2] += uses
        acc[3] += amount
        if day == today.isoformat():
            acc[0] += uses
            acc[1] += amount
    first_day = conn.execute("SELECT min(day) FROM sales_hourly WHERE tickets > 0").fetchone()[0]
    out = []
    for rule_id, text, enabled, created_at in conn.execute(
            "SELECT rule_id, rule, active, created_at FROM promotions ORDER BY rule_id"):
        try:
            rule = promotion_decoder.decode(text)
        except msgspec.DecodeError:  # one bad row must not take the page down
            continue
        e = rule.eligibility
        start = e.starts_at.astimezone(now.tzinfo).date() if e.starts_at is not None \
            else datetime.date.fromisoformat(created_at[:10])
        skus = covered(items, rule.items, descendants)
        before: int | None = None
        if first_day is not None and first_day <= _day(start, WEEK):
            window = _net_by_sku(conn, _day(start, WEEK), _day(start, 1))
            before = sum(net for sku, net in window.items() if sku in skus)
        uses, amount = totals.get(rule_id, (0, 0))
        today_uses, today_amount, week_uses, week_amount = daily.get(rule_id, [0, 0, 0, 0])
        out.append(PromotionStats(
            rule_id=rule_id, name=rule.name, name_en=rule.name_en, kind=str(type(rule.benefit).__struct_config__.tag),
            enabled=bool(enabled), active_now=bool(enabled) and in_window(e, now),
            starts_at=e.starts_at.isoformat() if e.starts_at else None,
            ends_at=e.ends_at.isoformat() if e.ends_at else None,
            weekdays=list(e.weekdays), hours=[f"{w.start}-{w.end}" for w in e.hours], started_on=start.isoformat(),
            uses=uses, discount=amount, uses_today=today_uses, discount_today=today_amount,
            uses_7d=week_uses, discount_7d=week_amount, covered_items=len(skus),
            covered_net_7d=sum(net for sku, net in last_week.items() if sku in skus), covered_net_before=before,
        ))
    return PromotionsReport(today=today.isoformat(), promotions=out)
