"""What the Stock page shows: levels against thresholds, batches near expiry with a suggested
markdown, and what to reorder. Read-only queries over a read connection.

Quantities are those of the ledger (units, or grams for weighed items); money is fen at the price
in force.
"""

from __future__ import annotations

import datetime
import math
import sqlite3
from typing import Literal

import msgspec

from edge.money import percent_of
from edge.pricing.price_lists import entries_in_force, pick, utc_text

AlertState = Literal["low", "high"]
AlertFilter = Literal["low", "high", "any", "ok"]
VELOCITY_DAYS = 28


def prices_in_force(conn: sqlite3.Connection, catalog: dict[str, int], store_id: str,
                    at: datetime.datetime) -> dict[str, int]:
    """Each sku's base price in force at `at` (HQ lists, the store's own list), else `catalog`'s.

    `catalog` maps sku → catalog price."""
    if conn.execute("SELECT 1 FROM price_list_items LIMIT 1").fetchone() is None:
        return dict(catalog)
    t = utc_text(at)
    prices = {}
    for sku, price in catalog.items():
        base, _ = pick(entries_in_force(conn, sku, store_id, t), None)
        prices[sku] = base.price if base is not None else price
    return prices


# -- levels ------------------------------------------------------------------------------------------

class Level(msgspec.Struct, frozen=True):
    sku: str
    name_zh: str
    name_en: str
    category: str
    unit: str
    on_hand: int
    low: int | None
    high: int | None
    alert: AlertState | None  # the level against the thresholds now


class LevelPage(msgspec.Struct, frozen=True):
    items: list[Level]
    total: int


_LEVELS_SQL = """
WITH lv AS (
    SELECT i.sku, i.name_zh, i.name_en, i.category_id, i.unit,
           coalesce((SELECT sum(b.on_hand) FROM stock_balance b WHERE b.sku = i.sku), 0) AS on_hand,
           i.low_threshold, i.high_threshold
    FROM items i WHERE i.active = 1 {search}),
alerted AS (
    SELECT *, CASE WHEN low_threshold IS NOT NULL AND on_hand < low_threshold THEN 'low'
                   WHEN high_threshold IS NOT NULL AND on_hand > high_threshold THEN 'high' END AS alert
    FROM lv)
SELECT {columns} FROM alerted {where}"""

_ALERT_WHERE: dict[AlertFilter | None, str] = {
    None: "", "low": "WHERE alert = 'low'", "high": "WHERE alert = 'high'", "any": "WHERE alert IS NOT NULL",
    "ok": "WHERE alert IS NULL"}


def levels(conn: sqlite3.Connection, query: str = "", limit: int = 50, offset: int = 0,
           alert_filter: AlertFilter | None = None) -> LevelPage:
    """Active items with on-hand and thresholds, by sku; `query` matches sku, names (substring) or
    a barcode (exact); `alert_filter` keeps low, high, either (`any`) or neither (`ok`)."""
    search, args = "", {}
    if query.strip():
        q = query.strip()
        args = {"like": "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%", "code": q}
        search = ("AND (i.sku LIKE :like ESCAPE '\\' OR i.name_zh LIKE :like ESCAPE '\\'"
                  " OR i.name_en LIKE :like ESCAPE '\\' OR i.plu = :code"
                  " OR EXISTS (SELECT 1 FROM barcodes c WHERE c.sku = i.sku AND c.code = :code))")
    where = _ALERT_WHERE[alert_filter]
    total = conn.execute(_LEVELS_SQL.format(search=search, columns="count(*)", where=where), args).fetchone()[0]
    rows = conn.execute(_LEVELS_SQL.format(search=search, columns="*", where=where) + " ORDER BY sku LIMIT :limit"
                        " OFFSET :offset", {**args, "limit": limit, "offset": offset})
    return LevelPage(items=[Level(*r) for r in rows], total=int(total))


# -- expiry ------------------------------------------------------------------------------------------

class Markdown(msgspec.Struct, frozen=True):
    """Batches with at most `days_left` days before expiry get `action`, at `percent_off`."""

    days_left: int
    action: Literal["remove", "markdown"]
    percent_off: int


# The markdown schedule, most urgent first; the first row a batch falls under applies. Expiring
# today or already expired: off the shelf (not sold at any price). Further out than the last row:
# no markdown yet.
MARKDOWN_SCHEDULE: tuple[Markdown, ...] = (
    Markdown(days_left=0, action="remove", percent_off=100),
    Markdown(days_left=1, action="markdown", percent_off=50),
    Markdown(days_left=3, action="markdown", percent_off=30),
    Markdown(days_left=7, action="markdown", percent_off=10),
)


class Suggestion(msgspec.Struct, frozen=True):
    action: Literal["remove", "markdown", "none"]
    percent_off: int
    price: int | None  # the suggested price (fen, per unit or per kg); None: do not sell


def markdown_for(days_left: int, price: int, schedule: tuple[Markdown, ...] = MARKDOWN_SCHEDULE) -> Suggestion:
    """The schedule's suggestion for a batch `days_left` days from expiry (negative: expired)."""
    for row in schedule:
        if days_left <= row.days_left:
            if row.action == "remove":
                return Suggestion("remove", row.percent_off, None)
            return Suggestion("markdown", row.percent_off, price - percent_of(price, row.percent_off * 100))
    return Suggestion("none", 0, price)


class ExpiringBatch(msgspec.Struct, frozen=True):
    sku: str
    name_zh: str
    name_en: str
    unit: str
    batch_id: int
    lot: str
    expiry: str
    days_left: int
    on_hand: int
    price: int
    action: Literal["remove", "markdown", "none"]
    percent_off: int
    suggested_price: int | None


class ExpiringList(msgspec.Struct, frozen=True):
    today: str
    within_days: int
    batches: list[ExpiringBatch]


def expiring(conn: sqlite3.Connection, today: str, within_days: int, *, store_id: str | None = None,
             at: datetime.datetime | None = None) -> ExpiringList:
    """Batches still on hand that expire within `within_days` of `today` (expired ones included),
    soonest first, each with its markdown. Prices are the catalog's unless `store_id` and `at` are
    given, then the price in force."""
    limit = (datetime.date.fromisoformat(today) + datetime.timedelta(days=within_days)).isoformat()
    rows = conn.execute(
        """SELECT i.sku, i.name_zh, i.name_en, i.unit, b.batch_id, b.lot, b.expiry,
                  CAST(julianday(b.expiry) - julianday(:today) AS INTEGER), sb.on_hand, i.price
           FROM batches b JOIN stock_balance sb ON sb.batch_id = b.batch_id AND sb.sku = b.sku
           JOIN items i ON i.sku = b.sku
           WHERE sb.on_hand > 0 AND b.expiry IS NOT NULL AND b.expiry <= :limit
           ORDER BY b.expiry, i.sku, b.batch_id""", {"today": today, "limit": limit}).fetchall()
    prices = {r[0]: r[9] for r in rows}
    if store_id is not None and at is not None:
        prices = prices_in_force(conn, prices, store_id, at)
    batches = []
    for sku, name_zh, name_en, unit, batch_id, lot, expiry, days_left, on_hand, _ in rows:
        price = prices[sku]
        s = markdown_for(days_left, price)
        batches.append(ExpiringBatch(sku, name_zh, name_en, unit, batch_id, lot, expiry, days_left, on_hand,
                                     price, s.action, s.percent_off, s.price))
    return ExpiringList(today=today, within_days=within_days, batches=batches)


# -- replenishment -----------------------------------------------------------------------------------

class Reorder(msgspec.Struct, frozen=True):
    """`sold` over the last `VELOCITY_DAYS` days (returns netted), `velocity` per day, `days_cover`
    how long on-hand lasts at that pace (incoming not included), `incoming` what transfers to this store still bring,
    `suggested` the quantity to order (units, or grams for weighed items)."""

    sku: str
    name_zh: str
    name_en: str
    unit: str
    on_hand: int
    incoming: int
    sold: int
    velocity: float
    days_cover: float
    suggested: int


class ReorderList(msgspec.Struct, frozen=True):
    today: str
    lead_time_days: int
    cover_days: int
    window_days: int
    items: list[Reorder]


def replenishment(conn: sqlite3.Connection, today: str, lead_time_days: int, cover_days: int, *,
                  store_id: str) -> ReorderList:
    """What to order so stock lasts the lead time plus `cover_days` at the pace of the last
    `VELOCITY_DAYS` days (today included): ceil(velocity × (lead + cover)) − on_hand − incoming,
    listed where positive, fewest days of cover first. Velocity comes from the `sales_daily_sku`
    rollup (units for counted items, grams for weighed ones, returns netted); `incoming` counts
    transfers to this store not yet received (shipped quantity once shipped, else requested)."""
    first = (datetime.date.fromisoformat(today) - datetime.timedelta(days=VELOCITY_DAYS - 1)).isoformat()
    horizon = lead_time_days + cover_days
    rows = conn.execute(
        """WITH sold AS (
               SELECT sku, sum(qty - returned_qty) AS units, sum(weight_g - returned_weight_g) AS grams
               FROM sales_daily_sku WHERE day BETWEEN :first AND :today GROUP BY sku),
           stock AS (SELECT sku, sum(on_hand) AS on_hand FROM stock_balance GROUP BY sku),
           incoming AS (
               SELECT l.sku, sum(coalesce(l.shipped, l.requested)) AS qty
               FROM transfers t JOIN transfer_lines l ON l.transfer_id = t.transfer_id
               WHERE t.to_store = :store AND t.state IN ('requested', 'in_transit') GROUP BY l.sku)
           SELECT s.sku, i.name_zh, i.name_en, i.unit, coalesce(k.on_hand, 0), coalesce(n.qty, 0),
                  CASE WHEN i.unit = 'kg' THEN s.grams ELSE s.units END AS sold
           FROM sold s JOIN items i ON i.sku = s.sku LEFT JOIN stock k ON k.sku = s.sku
           LEFT JOIN incoming n ON n.sku = s.sku
           WHERE sold > 0 AND i.active = 1""",
        {"first": first, "today": today, "store": store_id}).fetchall()
    items = []
    for sku, name_zh, name_en, unit, on_hand, incoming, sold in rows:
        need = -(-sold * horizon // VELOCITY_DAYS)  # ceil(sold / days × horizon) in integers
        suggested = need - on_hand - incoming
        if suggested <= 0:
            continue
        velocity = sold / VELOCITY_DAYS
        days_cover = max(on_hand, 0) / velocity
        items.append(Reorder(sku, name_zh, name_en, unit, on_hand, incoming, sold, round(velocity, 2),
                             math.floor(days_cover * 10) / 10, suggested))
    items.sort(key=lambda r: (r.days_cover, -r.velocity, r.sku))
    return ReorderList(today=today, lead_time_days=lead_time_days, cover_days=cover_days,
                       window_days=VELOCITY_DAYS, items=items)
