"""A year (or any number of days) of a busy store, written straight into a seeded hub database.

For the reports and the `backroom bench ui` harness: pages must answer in < 300 ms on a store that
has sold ~2,000 tickets a day for a year. Tickets are priced by the real engine (`price_basket`
with the store's rule book, tiers and coupons at the ticket's time), so sale rows, lines, tenders,
promotion records, points, stock movements and returns are shaped exactly like the ones checkout
and returns write, and the rollup triggers of migration m090 fire on every row.

What a ticket looks like: 07:00–22:00 with peaks around 8, 12 and 18 (flatter and later on
weekends), more tickets on Friday to Sunday, a mild seasonal swing; ~5 lines drawn from the catalog
with a long-tailed popularity; ~35 % with a member (extra members are generated, 70/20/10 regular,
silver, gold); cash (with change), WeChat Pay, Alipay, card and UnionPay; WELCOME10 on some baskets
over ¥50; ~0.6 % of tickets returned (one line) within three days. Stock comes from deliveries
each morning when an item runs below what it sells in a day and a half (or its low threshold).
The demo promotions start at staggered days of the history (`promotions.created_at`), each one
priced in only from its start.

Not written, on purpose: journal and outbox records (history is not HQ's business here; sales carry
journal_seq 0 and an empty journal_hash, so `journal verify` still checks only the real chain),
stored-value and points tenders, exchanges, stock alerts along the way (thresholds are checked once
at the end), idempotency hashes of real requests (request_hash is a hash of the id). History sales
take stock from the unbatched balance (batch 0); deliveries are unbatched.

Rows are written with executemany, one transaction per store day, straight to the file (not
through the hub's writer): the hub must not be running on the directory meanwhile.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import heapq
import math
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from edge.catalog.barcodes import make_variable_measure
from edge.clock import StoreClock
from edge.config import load_config
from edge.members import pii
from edge.members.ledger import expiry_date
from edge.money import share_of_units
from edge.pricing.engine import BasketLine, Context, PricedLine, PricingItem, Tier, points_for_quote, price_basket
from edge.promotions.engine import RuleBook
from edge.promotions.outcome import CouponGrant
from edge.promotions.repository import load_book
from edge.promotions.rules import promotion_decoder, promotion_encoder
from edge.reports import rollups
from edge.sales.models import MemberSummary, ReturnedLine, ReturnResult, SaleResult, TenderIn
from edge.sales.returns import split_refund
from edge.storage.db import connect

SEED = 20250101
TILLS = [("T1", 5), ("T2", 5), ("T3", 4), ("T4", 4), ("T5", 3), ("T6", 2), ("T7", 1), ("T8", 1)]
TENDERS = [("wechat", 34), ("alipay", 26), ("cash", 22), ("card", 10), ("unionpay", 8)]
LINES = [(1, 10), (2, 12), (3, 14), (4, 14), (5, 13), (6, 11), (7, 8), (8, 6), (9, 4), (10, 3), (12, 3), (15, 2)]
MEMBER_SHARE = 0.35
RETURN_SHARE = 0.006
COUPON_SHARE = 0.02
COUPON = CouponGrant("WELCOME10", "demo-welcome-coupon", 0)
WEEKDAY_FACTOR = {1: 0.92, 2: 0.92, 3: 0.92, 4: 0.92, 5: 1.0, 6: 1.18, 7: 1.12}
_encode = msgspec.json.Encoder().encode
Progress = Callable[[str], None]


class HistoryStats(msgspec.Struct):
    days: int = 0
    tickets: int = 0
    lines: int = 0
    returns: int = 0
    members: int = 0
    deliveries: int = 0
    seconds: float = 0.0
    db_bytes: int = 0


def _hour_weights(weekend: bool) -> list[float]:
    """Relative traffic of hours 0..23: closed outside 7:00–22:00, peaks at 8, 12 and 18."""
    peaks = [(9.5, 1.2, 0.7), (12.5, 1.5, 1.0), (17.5, 1.6, 1.2)] if weekend else \
        [(8.0, 0.8, 0.8), (12.0, 1.0, 1.0), (18.0, 1.2, 1.3)]
    out = []
    for h in range(24):
        if not 7 <= h < 22:
            out.append(0.0)
            continue
        mid = h + 0.5
        out.append(0.25 + sum(height * math.exp(-((mid - at) ** 2) / (2 * sd * sd)) for at, sd, height in peaks))
    return out


T = TypeVar("T")


def _cum(pairs: list[tuple[T, int]]) -> tuple[list[T], list[int]]:
    return [p[0] for p in pairs], list(accumulate(p[1] for p in pairs))


class _PointsBatch(msgspec.Struct):
    entry_id: int
    member_id: str
    earned: int
    expires_on: str | None
    remaining: int


class _Due(msgspec.Struct, frozen=True):
    """A return to write when its time comes: what of the sale it needs."""

    sale_id: str
    line: PricedLine
    method: str
    total: int
    points: int
    member_id: str | None
    tier: str | None


class _Catalog:
    def __init__(self, conn: sqlite3.Connection, rng: random.Random) -> None:
        rewards = {r[0] for r in conn.execute("SELECT sku FROM points_rewards")}
        first_code: dict[str, str] = {}
        for code, sku in conn.execute("SELECT code, sku FROM barcodes ORDER BY code"):
            first_code.setdefault(sku, code)
        self.items: list[PricingItem] = []
        self.plu: dict[str, str | None] = {}
        self.code: dict[str, str | None] = {}
        self.low: dict[str, int | None] = {}
        self.high: dict[str, int | None] = {}
        for sku, zh, en, cat, unit, price, tax, plu, brand, tags, low, high in conn.execute(
                """SELECT sku, name_zh, name_en, category_id, unit, price, tax_rate_bp, plu, brand, tags,
                          low_threshold, high_threshold FROM items WHERE active = 1 ORDER BY sku"""):
            if sku in rewards:
                continue
            self.items.append(PricingItem(sku, zh, en, cat, unit, price, tax, brand,
                                          tuple(msgspec.json.decode(tags, type=list[str]) if tags else ())))
            self.plu[sku], self.code[sku], self.low[sku], self.high[sku] = plu, first_code.get(sku), low, high
        order = list(range(len(self.items)))
        rng.shuffle(order)
        weights = [0.0] * len(self.items)
        for rank, i in enumerate(order, start=1):
            weights[i] = 1 / rank ** 0.9  # a long tail: a few items sell every few minutes
        self.cum = list(accumulate(weights))
        total = self.cum[-1]
        self.share = [w / total for w in weights]


def _ensure_members(conn: sqlite3.Connection, extra: int, rng: random.Random, at: str) -> None:
    have = conn.execute("SELECT count(*) FROM members WHERE member_id >= 'M200000'").fetchone()[0]
    row = conn.execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()
    store_id = str(row[0]) if row else None
    ids = []
    for i in range(have, extra):
        tier = rng.choices(["regular", "silver", "gold"], [70, 20, 10])[0]
        member_id = f"M{200000 + i:06d}"
        pii.insert_member(conn, member_id, pii.Personal(phone=f"177{i:08d}", name=f"会员{i:05d}",
                                                        card_no=f"885{i:07d}"),
                          tier=tier, tags="[]", home_store=store_id, created_at=at)
        ids.append(member_id)
    conn.executemany("INSERT OR IGNORE INTO member_balance (member_id) VALUES (?)", [(m,) for m in ids])


def generate(db_path: Path, *, days: int = 365, tickets_per_day: int = 2000, members: int = 5000,
             seed: int = SEED, progress: Progress | None = None, now: datetime.datetime | None = None) -> HistoryStats:
    """Write `days` store days before today, and today up to `now`, into the seeded hub at `db_path`."""
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    rng = random.Random(seed)
    config = load_config(data_dir=db_path.parent)
    clock = StoreClock(config.timezone)
    now = now or clock.now()
    today = now.date()
    first = today - datetime.timedelta(days=days)
    tz = now.tzinfo
    conn = connect(db_path)
    conn.execute("PRAGMA cache_size = -1000000")  # 1 GB: random-id B-trees of a year stay in memory
    conn.execute("PRAGMA synchronous = NORMAL")  # one fsync per day is plenty for a generator
    stats = HistoryStats(days=days + 1, members=members)

    store_id = conn.execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()[0]
    store_code = "".join(ch for ch in store_id.upper() if ch.isalnum())[:12] or "STORE"
    start_stamp = datetime.datetime.combine(first, datetime.time(6, 0), tz).isoformat(timespec="milliseconds")

    # -- the store as it was a year ago: seeded rows backdated, members, promotions starting over the year
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE stock_movements SET at = ? WHERE ref = 'seed'", (start_stamp,))
    conn.execute("UPDATE members SET created_at = ? WHERE created_at > ?", (start_stamp, start_stamp))
    _ensure_members(conn, members, rng, start_stamp)
    promos = conn.execute("SELECT rule_id FROM promotions ORDER BY rule_id").fetchall()
    starts: dict[str, datetime.date] = {}
    for n, (rule_id,) in enumerate(promos):  # the first runs from the start, the others begin later
        begins = first + datetime.timedelta(days=min(days * n // (len(promos) + 1), max(0, days - 14)))
        starts[rule_id] = begins
        stamp = datetime.datetime.combine(begins, datetime.time(6, 0), tz).isoformat(timespec="milliseconds")
        conn.execute("UPDATE promotions SET created_at = ?, updated_at = ? WHERE rule_id = ?", (stamp, stamp, rule_id))
    conn.execute("COMMIT")

    cat = _Catalog(conn, rng)
    tiers = {r[0]: Tier(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(
        "SELECT tier, name_zh, name_en, discount_bp, points_multiplier_pct FROM tiers")}
    member_rows = conn.execute("SELECT member_id, tier, tags FROM members ORDER BY member_id").fetchall()
    member_list = [(m, tiers.get(t), tuple(msgspec.json.decode(tags, type=list[str]) if tags else ()))
                   for m, t, tags in member_rows]
    member_cum = list(accumulate(1 / (i + 10) ** 0.6 for i in range(len(member_list))))  # regulars come often
    points_now = {r[0]: r[1] for r in conn.execute("SELECT member_id, points FROM member_balance")}
    valid_months = int((conn.execute("SELECT value FROM settings WHERE key = 'points_valid_months'").fetchone()
                        or (24,))[0])
    full_book = load_book(conn)
    parents = {r[0]: r[1] for r in conn.execute("SELECT category_id, parent_id FROM categories")}
    tier_promos = [c.rule for c in full_book.rules if c.rule_id.startswith("tier:")]
    store_promos = {r[0]: promotion_decoder.decode(r[1]) for r in conn.execute("SELECT rule_id, rule FROM promotions")}
    books: dict[frozenset[str], RuleBook] = {}

    def book_on(day: datetime.date) -> RuleBook:
        running = frozenset(r for r, d in starts.items() if d <= day)
        if running not in books:
            books[running] = RuleBook([*tier_promos, *(store_promos[r] for r in sorted(running))], parents)
        return books[running]

    on_hand = {r[0]: r[1] for r in conn.execute("SELECT sku, sum(on_hand) FROM stock_balance GROUP BY sku")}
    unbatched_delta: dict[str, int] = {}
    mean_lines = sum(n * w for n, w in LINES) / sum(w for _, w in LINES)
    daily_units = {}
    for item, share in zip(cat.items, cat.share, strict=True):
        per_line = 1000 if item.unit == "kg" else 1.3
        daily_units[item.sku] = tickets_per_day * mean_lines * share * per_line
    receipt = int((conn.execute("SELECT value FROM counters WHERE name = 'receipt'").fetchone() or (0,))[0])
    coupon_uses = int(conn.execute("SELECT count(*) FROM coupon_redemptions WHERE code = ?", (COUPON.code,))
                      .fetchone()[0])
    next_entry = int(conn.execute("SELECT coalesce(max(entry_id), 0) FROM points_ledger").fetchone()[0]) + 1
    promo_totals: dict[str, list[int]] = {}
    batches: dict[str, list[_PointsBatch]] = {}  # per member, the points batches history earned
    tills, till_cum = _cum(TILLS)
    methods, method_cum = _cum(TENDERS)
    line_counts, line_cum = _cum(LINES)
    pending: list[tuple[str, int, _Due]] = []  # returns due: (created_at, seq, what they need)
    seq = 0

    for offset in range(days + 1):
        day = first + datetime.timedelta(days=offset)
        iso = day.isoweekday()
        seasonal = 1 + 0.08 * math.sin(2 * math.pi * day.timetuple().tm_yday / 365)
        n_tickets = max(1, round(tickets_per_day * WEEKDAY_FACTOR[iso] * seasonal * rng.gauss(1, 0.05)))
        hours = _hour_weights(iso >= 6)
        hour_cum = list(accumulate(hours))
        stamps = []
        for _ in range(n_tickets):
            h = bisect.bisect_right(hour_cum, rng.random() * hour_cum[-1])
            stamps.append(datetime.datetime(day.year, day.month, day.day, h, rng.randrange(60), rng.randrange(60),
                                            rng.randrange(1000) * 1000, tz))
        stamps.sort()
        if day == today:
            stamps = [s for s in stamps if s <= now]
        book = book_on(day)
        day_text = day.isoformat()
        sales: list[tuple[Any, ...]] = []
        lines_rows: list[tuple[Any, ...]] = []
        tenders_rows: list[tuple[Any, ...]] = []
        promo_rows: list[tuple[Any, ...]] = []
        moves: list[tuple[Any, ...]] = []
        points_rows: list[tuple[Any, ...]] = []
        redemptions: list[tuple[Any, ...]] = []

        # deliveries before opening: whatever will not last a day and a half
        delivered_at = datetime.datetime.combine(day, datetime.time(6, 30), tz).isoformat(timespec="milliseconds")
        for item in cat.items:
            need = daily_units[item.sku]
            low = max(cat.low[item.sku] or 0, int(need * 1.5))
            if on_hand.get(item.sku, 0) < low:
                target = max(cat.high[item.sku] or 0, int(need * 4) + 1)
                qty = target - on_hand.get(item.sku, 0)
                on_hand[item.sku] = target
                unbatched_delta[item.sku] = unbatched_delta.get(item.sku, 0) + qty
                moves.append((item.sku, "receive", qty, f"DLV-{day_text}", "delivery", "U-manager", None,
                              delivered_at))
                stats.deliveries += 1

        for at in stamps:
            stamp = at.isoformat(timespec="milliseconds")
            till = tills[bisect.bisect_right(till_cum, rng.random() * till_cum[-1])]
            user = "U-cashier" if rng.random() < 0.85 else "U-guide"
            member = None
            if rng.random() < MEMBER_SHARE:
                member = member_list[bisect.bisect_right(member_cum, rng.random() * member_cum[-1])]
            n_lines = line_counts[bisect.bisect_right(line_cum, rng.random() * line_cum[-1])]
            chosen: dict[int, None] = {}
            while len(chosen) < min(n_lines, len(cat.items)):
                chosen[bisect.bisect_right(cat.cum, rng.random() * cat.cum[-1])] = None
            basket = []
            for line_no, idx in enumerate(chosen, start=1):
                item = cat.items[idx]
                if item.unit == "kg":
                    grams = max(80, int(rng.lognormvariate(6.7, 0.5)))
                    plu = cat.plu[item.sku]
                    code = make_variable_measure("21", plu, grams) if plu and len(plu) == 5 and grams < 100000 \
                        else None
                    gross = (item.price * grams * 2 + 1000) // 2000  # half-up, as resolve_line
                    basket.append(BasketLine(line_no, item, 1, grams, code, item.price, gross))
                else:
                    qty = 1 if rng.random() < 0.75 else rng.choice((2, 2, 2, 3, 4))
                    basket.append(BasketLine(line_no, item, qty, None, cat.code[item.sku], item.price,
                                             item.price * qty))
            ctx = Context(member_id=member[0] if member else None, tier=member[1] if member else None,
                          member_tags=member[2] if member else (), store_id=store_id, at=at)
            use_coupon = "demo-welcome-coupon" in book.by_id and rng.random() < COUPON_SHARE
            if use_coupon:
                ctx = msgspec.structs.replace(ctx, coupons=(COUPON,))
            quote = price_basket(basket, ctx, book)
            if use_coupon and (quote.coupon_issues or not any(u.coupon for u in quote.uses)):
                ctx = msgspec.structs.replace(ctx, coupons=())
                quote = price_basket(basket, ctx, book)
            receipt += 1
            sale_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            receipt_no = f"{store_code}-{receipt:08d}"
            method = methods[bisect.bisect_right(method_cum, rng.random() * method_cum[-1])]
            total = quote.total
            tendered = total
            if method == "cash" and total > 0:
                note = rng.choice((1000, 2000, 5000, 10000, 10000, 10000))
                tendered = -(-total // note) * note if rng.random() < 0.8 else total
            tenders = [TenderIn(method, tendered)]  # type: ignore[arg-type]
            points = points_for_quote(quote, 0) if member else 0
            summary = None
            if member:
                mid = member[0]
                if points:
                    points_now[mid] = points_now.get(mid, 0) + points
                    batches.setdefault(mid, []).append(
                        _PointsBatch(next_entry, mid, points, expiry_date(day, valid_months), points))
                    points_rows.append((next_entry, mid, points, "earn", sale_id, user, till, stamp))
                    next_entry += 1
                summary = MemberSummary(mid, member[1].tier if member[1] else "regular", points_now.get(mid, 0), 0)
            result = SaleResult(
                sale_id=sale_id, receipt_no=receipt_no, till_id=till, created_at=stamp, lines=quote.lines,
                subtotal=quote.subtotal, discount=quote.discount, total=total, tax=quote.tax, tenders=tenders,
                tendered=tendered, change=tendered - total, points_earned=points, points_redeemed=0, member=summary,
                journal_seq=0, journal_hash="")
            sales.append((sale_id, receipt_no, till, user, ctx.member_id, quote.subtotal, quote.discount, total,
                          quote.tax, tendered, tendered - total, points, hashlib.sha256(sale_id.encode()).hexdigest(),
                          _encode(result), 0, stamp))
            for ln in quote.lines:
                units = ln.weight_g if ln.unit == "kg" and ln.weight_g is not None else ln.qty
                lines_rows.append((sale_id, ln.line_no, ln.sku, ln.barcode, ln.qty, ln.weight_g, ln.unit_price,
                                   ln.gross, ln.discount, ln.net, ln.tax, ln.tax_rate_bp,
                                   _encode(ln.applied).decode(), f"[[0,{units}]]"))
                moves.append((ln.sku, "sale", -units, sale_id, "", user, till, stamp))
                on_hand[ln.sku] = on_hand.get(ln.sku, 0) - units
                unbatched_delta[ln.sku] = unbatched_delta.get(ln.sku, 0) - units
            reference = None if method == "cash" else f"{method[:2].upper()}{sale_id[:18]}"  # the acquirer's id
            tenders_rows.append((sale_id, 1, method, tendered, reference))
            for use in quote.uses:
                promo_rows.append((sale_id, use.rule.rule_id, use.amount, use.times, use.coupon,
                                   promotion_encoder.encode(use.rule).decode(), _encode(use.bases).decode()))
                acc = promo_totals.setdefault(use.rule.rule_id, [0, 0])
                acc[0] += 1
                acc[1] += use.amount
                if use.coupon is not None:
                    coupon_uses += 1
                    redemptions.append((use.coupon, coupon_uses, sale_id, store_id, ctx.member_id, stamp))
            stats.tickets += 1
            stats.lines += len(quote.lines)
            if rng.random() < RETURN_SHARE and quote.lines:
                back = at + datetime.timedelta(minutes=rng.randrange(30, 3 * 24 * 60))
                if back <= now and 7 <= back.hour < 22:
                    seq += 1
                    ln = rng.choice(quote.lines)
                    heapq.heappush(pending, (back.isoformat(timespec="milliseconds"), seq, _Due(
                        sale_id, ln, method, total, points, ctx.member_id, summary.tier if summary else None)))

        returns: list[tuple[Any, ...]] = []
        return_lines: list[tuple[Any, ...]] = []
        refunds_rows: list[tuple[Any, ...]] = []
        day_end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(0), tz)
        while pending and pending[0][0] < day_end.isoformat():
            stamp, _, due = heapq.heappop(pending)
            ln, mid, points, total = due.line, due.member_id, due.points, due.total
            weighed = ln.unit == "kg" and ln.weight_g is not None
            units = ln.weight_g if weighed and ln.weight_g is not None else ln.qty
            taking = units if weighed else rng.randint(1, ln.qty)
            refund = share_of_units(ln.net, units, 0, taking)
            refunds = split_refund(refund, {due.method: total}, {}) if refund else []  # cash less its change
            return_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            user, till = "U-cashier", "T1"
            reversed_points = 0
            member_after = None
            if mid is not None:
                if points and total > 0:
                    reversed_points = min(share_of_units(points, total, 0, refund), points_now.get(mid, 0))
                if reversed_points:
                    points_now[mid] -= reversed_points
                    owed = reversed_points
                    for batch in batches.get(mid, []):  # earned in date order: first-expiring first
                        take = min(owed, batch.remaining)
                        batch.remaining -= take
                        owed -= take
                        if owed == 0:
                            break
                    points_rows.append((next_entry, mid, -reversed_points, "reverse", return_id, user, till, stamp))
                    next_entry += 1
                member_after = MemberSummary(mid, due.tier or "regular", points_now.get(mid, 0), 0)
            rl = ReturnedLine(ln.line_no, ln.sku, 1 if weighed else taking, taking if weighed else None, refund)
            returned = ReturnResult(return_id=return_id, sale_id=due.sale_id, created_at=stamp, lines=[rl],
                                    refund_total=refund, refunds=refunds, points_reversed=reversed_points,
                                    member=member_after, journal_seq=0, journal_hash="")
            returns.append((return_id, due.sale_id, till, user, refund, reversed_points,
                            hashlib.sha256(return_id.encode()).hexdigest(), _encode(returned), 0, stamp))
            return_lines.append((return_id, rl.line_no, rl.qty, rl.weight_g, refund))
            refunds_rows += [(return_id, n, f.method, f.amount) for n, f in enumerate(refunds, start=1)]
            moves.append((ln.sku, "return", taking, return_id, "", user, till, stamp))
            on_hand[ln.sku] = on_hand.get(ln.sku, 0) + taking
            unbatched_delta[ln.sku] = unbatched_delta.get(ln.sku, 0) + taking
            stats.returns += 1

        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            """INSERT INTO sales (sale_id, receipt_no, till_id, user_id, member_id, subtotal, discount, total, tax,
                   tendered, change, points_earned, request_hash, response, journal_seq, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", sales)
        conn.executemany(
            """INSERT INTO sale_promotions (sale_id, rule_id, amount, times, coupon_code, rule, bases)
               VALUES (?, ?, ?, ?, ?, ?, ?)""", promo_rows)
        conn.executemany("INSERT INTO coupon_redemptions (code, use_no, sale_id, store_id, member_id, at)"
                         " VALUES (?, ?, ?, ?, ?, ?)", redemptions)
        conn.executemany(
            """INSERT INTO sale_lines (sale_id, line_no, sku, barcode, qty, weight_g, unit_price, gross, discount,
                   net, tax, tax_rate_bp, applied, batches) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            lines_rows)
        day_of = {row[0]: row[15] for row in sales}
        rollups.add_sold_lines(conn, [(day_of[r[0]], r[2], r[4], r[5], r[9]) for r in lines_rows])
        conn.executemany("INSERT INTO sale_tenders (sale_id, tender_no, method, amount, reference)"
                         " VALUES (?, ?, ?, ?, ?)", tenders_rows)
        conn.executemany(
            """INSERT INTO returns (return_id, sale_id, till_id, user_id, refund_total, points_reversed,
                   request_hash, response, journal_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            returns)
        conn.executemany("INSERT INTO return_lines (return_id, line_no, qty, weight_g, refund) VALUES (?, ?, ?, ?, ?)",
                         return_lines)
        conn.executemany("INSERT INTO return_refunds (return_id, refund_no, method, amount) VALUES (?, ?, ?, ?)",
                         refunds_rows)
        conn.executemany(
            """INSERT INTO stock_movements (sku, batch_id, kind, qty, ref, reason, user_id, till_id, at)
               VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?)""", moves)
        conn.executemany(
            """INSERT INTO points_ledger (entry_id, member_id, delta, kind, ref, user_id, till_id, at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""", points_rows)
        conn.execute("COMMIT")
        if offset % 30 == 0 or day == today:
            say(f"{day_text}: {stats.tickets} tickets, {stats.lines} lines, {stats.returns} returns"
                f" ({time.perf_counter() - t0:.0f} s)")

    # -- caches the ledgers' sums must equal, and the counters a live hub continues from
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        """INSERT INTO points_batches (entry_id, member_id, earned, expires_on, remaining) VALUES (?, ?, ?, ?, ?)""",
        [(b.entry_id, b.member_id, b.earned, b.expires_on, b.remaining) for bs in batches.values() for b in bs])
    conn.executemany("UPDATE member_balance SET points = ? WHERE member_id = ?",
                     [(p, m) for m, p in points_now.items()])
    conn.executemany(
        """INSERT INTO stock_balance (sku, batch_id, on_hand) VALUES (?, 0, ?)
           ON CONFLICT (sku, batch_id) DO UPDATE SET on_hand = on_hand + excluded.on_hand""",
        list(unbatched_delta.items()))
    conn.executemany(
        """INSERT INTO promotion_totals (rule_id, uses, amount) VALUES (?, ?, ?)
           ON CONFLICT (rule_id) DO UPDATE SET uses = uses + excluded.uses, amount = amount + excluded.amount""",
        [(r, u, a) for r, (u, a) in promo_totals.items()])
    conn.execute("""INSERT INTO counters (name, value) VALUES ('receipt', ?)
                    ON CONFLICT (name) DO UPDATE SET value = excluded.value""", (receipt,))
    conn.execute("COMMIT")
    from edge.stock import ledger as stock  # thresholds once, on the final balances

    conn.execute("BEGIN IMMEDIATE")
    at_now = now.isoformat(timespec="milliseconds")
    for item in cat.items:
        stock.check_thresholds(conn, item.sku, at_now)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    stats.seconds = round(time.perf_counter() - t0, 1)
    stats.db_bytes = db_path.stat().st_size
    say(f"done: {stats.tickets} tickets over {stats.days} days in {stats.seconds} s, "
        f"{stats.db_bytes / 1e6:.0f} MB")
    return stats


def seed_and_generate(data_dir: Path, **kwargs: object) -> HistoryStats:
    """Seed the demo store into an empty `data_dir` (as `backroom seed --demo` does), then its history."""
    from edge.seed.demo import seed_demo
    from edge.storage.db import Database

    config = load_config(data_dir=data_dir)
    db = Database(config.db_path)
    try:
        db.write_sync(lambda conn: seed_demo(conn, config.store_id, StoreClock(config.timezone)))
    finally:
        db.close()
    return generate(config.db_path, **kwargs)  # type: ignore[arg-type]


def main() -> None:  # python -m edge.reports.history DIR [DAYS] [TICKETS_PER_DAY]
    import sys

    data = Path(sys.argv[1])
    days = int(sys.argv[2]) if len(sys.argv) > 2 else 365
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    stats = seed_and_generate(data, days=days, tickets_per_day=rate, progress=print)
    print(msgspec.json.encode(stats).decode())


if __name__ == "__main__":
    main()
