"""A chain with a year (or any number of days) of history, written straight into HQ's tables in bulk.

For `backroom bench console` (hq_sync/bench_console.py): the console's pages must answer in
≤ 500 ms on a chain of 50 stores that has been selling for a year. The chain is the demo chain
(service/demo.py: the demo catalog, tiers, members, demo-001 and demo-002) plus stores `store-003`…
in five regions, and `--members` generated members with a home store each.

What a store day looks like (the hourly shape of edge/reports/history.py: 07:00–22:00, peaks around
8, 12 and 18, flatter and later on weekends; more tickets Friday to Sunday; each store its own size
between 0.6 and 1.4 of `tickets_per_day`): ~3 lines from the catalog with a long-tailed popularity
(weighed items 200–1,500 g), some lines discounted; ~35 % of tickets with a member (regulars come
often) who earns points by tier; WeChat Pay, Alipay, cash, card, UnionPay, and stored value when a
member's balance covers the ticket; a few top-ups a day; ~0.5 % of tickets returned the next day.
Today is written up to `now`. Two stores have been silent for hours (their `last_seen`), a few days
have digest mismatches and a few deltas are quarantined, so health pages have something to show.

Member money stays consistent: every balance and points change is an `hq_member_ledger` entry, the
members' cached `balance`/`points` are the sums of their ledgers, and each member's home store holds
an escrow within them (`balance ≥ Σ outstanding ≥ 0`).

The rollups the dashboard and the reports read (`hq_sales_hourly`, `hq_store_hours`, `hq_store_days`,
`hq_sku_days`, `hq_rule_days`) are built at the end from the sales written, as HQ builds them for older sales at start.

Not written, on purpose: `hq_deltas` rows of applied deltas (the stores' acked/head sequences are
set to what their streams would hold; digest checks are written as their outcome), the feed, and
stock movements (the per-store stock snapshot `hq_stock_levels` is written instead). Returns refund
to the sale's first tender and do not reverse points. Sale ids are UUID-shaped but ordered by day,
so a year appends to the B-trees instead of scattering over them.

One transaction per day of the whole chain (COPY on PostgreSQL, executemany on SQLite). HQ must not
be serving the database meanwhile.
"""

from __future__ import annotations

import bisect
import datetime
import math
import random
import time
import uuid
import zoneinfo
from collections.abc import Callable
from itertools import accumulate

import msgspec

from edge.members import pii as pii_crypto
from edge.reports.history import WEEKDAY_FACTOR, _hour_weights
from hq_sync.server.service.demo import DEMO_STORES, seed_demo
from hq_sync.server.storage import partitions
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.server.storage.schema import create_schema

SEED = 20260101
TIMEZONE = "Asia/Shanghai"
REGIONS = (("华东 East", 14), ("华北 North", 11), ("华南 South", 10), ("西南 Southwest", 8), ("华中 Central", 7))
CITIES = {"华东 East": "上海", "华北 North": "北京", "华南 South": "广州", "西南 Southwest": "成都",
          "华中 Central": "武汉"}
TENDERS = (("wechat", 34), ("alipay", 26), ("cash", 22), ("card", 10), ("unionpay", 8))
LINES = ((1, 18), (2, 22), (3, 20), (4, 14), (5, 10), (6, 7), (8, 5), (10, 4))
MEMBER_SHARE = 0.35
STORED_VALUE_SHARE = 0.12  # of member tickets the balance covers
RETURN_SHARE = 0.005
TOPUPS_PER_STORE_DAY = 3
SILENT_STORES = 2
Progress = Callable[[str], None]


class ChainStats(msgspec.Struct):
    stores: int = 0
    days: int = 0
    members: int = 0
    tickets: int = 0
    lines: int = 0
    returns: int = 0
    topups: int = 0
    ledger_entries: int = 0
    seconds: float = 0.0


def store_ids(stores: int) -> list[str]:
    """The chain's store ids: the two demo stores, then `store-003`, `store-004`, …"""
    demo = [s[0] for s in DEMO_STORES]
    return demo[:stores] + [f"store-{n:03d}" for n in range(len(demo) + 1, stores + 1)]


def _region(rng: random.Random) -> str:
    return rng.choices([r[0] for r in REGIONS], [r[1] for r in REGIONS])[0]


def _sale_id(day_no: int, store_no: int, n: int) -> str:
    """UUID-shaped and ordered by (day, store, ticket)."""
    return str(uuid.UUID(int=(day_no << 100) | (store_no << 80) | (n << 48) | 0x4000_8000_0000))


class _Item(msgspec.Struct, frozen=True):
    sku: str
    unit: str
    price: int
    tax_rate_bp: int


class _Member(msgspec.Struct):
    member_id: str
    tier: str
    home: str
    balance: int = 0
    points: int = 0


def _add_stores(tx: Tx, ids: list[str], rng: random.Random, now: datetime.datetime) -> None:
    demo = {s[0] for s in DEMO_STORES}
    for n, store_id in enumerate(ids, start=1):
        if store_id not in demo:
            region = _region(rng)
            tx.run("""INSERT INTO hq_stores (store_id, name, region) VALUES (?, ?, ?)
                      ON CONFLICT (store_id) DO NOTHING""",
                   (store_id, f"{CITIES[region]}{n:03d}店 Store {n}", region))
        silent = n > len(ids) - SILENT_STORES
        seen = now - datetime.timedelta(hours=rng.uniform(3, 30) if silent else rng.uniform(0, 20) / 3600)
        tx.run("UPDATE hq_stores SET public_key = ?, paired_at = ?, last_seen = ? WHERE store_id = ?",
               (rng.randbytes(32), (now - datetime.timedelta(days=400)).isoformat(timespec="seconds"),
                seen.isoformat(timespec="milliseconds"), store_id))


def _add_members(tx: Tx, count: int, ids: list[str], rng: random.Random, at: str) -> list[_Member]:
    have = {r[0]: (r[1], r[2], int(r[3]), int(r[4])) for r in
            tx.all("SELECT member_id, tier, home_store, balance, points FROM hq_members")}
    rows = []
    keys = pii_crypto.load(tx.key_path)
    for i in range(count):
        member_id = f"M{300000 + i:06d}"
        if member_id in have:
            continue
        tier = rng.choices(["regular", "silver", "gold"], [70, 20, 10])[0]
        home = rng.choice(ids)
        birthday = f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        personal = pii_crypto.Personal(phone=f"139{i:08d}", name=f"会员{i:05d}", birthday=birthday,
                                       card_no=f"886{i:07d}")
        rows.append((member_id, tier, "[]", home, at, *keys.columns(member_id, personal)))  # sealed (docs/privacy.md)
        have[member_id] = (tier, home, 0, 0)
    tx.copy("hq_members", "member_id, tier, tags, home_store, created_at, phone_hash, card_hash, phone_last4, pii",
            rows)
    return [_Member(m, t, h or ids[0], b, p) for m, (t, h, b, p) in sorted(have.items())]


def generate_chain(db: HqDb, *, stores: int = 50, days: int = 365, tickets_per_day: int = 200, members: int = 20000,
                   seed: int = SEED, progress: Progress | None = None,
                   now: datetime.datetime | None = None) -> ChainStats:
    """Seed the demo chain into an empty HQ database and write `days` days of history before today, and
    today up to `now`, for `stores` stores."""
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    rng = random.Random(seed)
    tz = zoneinfo.ZoneInfo(TIMEZONE)
    now = (now or datetime.datetime.now(tz)).astimezone(tz)
    today = now.date()
    first = today - datetime.timedelta(days=days)
    start = datetime.datetime.combine(first, datetime.time(6, 0), tz).isoformat(timespec="milliseconds")
    create_schema(db)
    with db.read() as tx:
        if tx.one("SELECT 1 FROM hq_sales LIMIT 1") is not None:
            raise ValueError("this HQ database already holds sales; generate into an empty one")
    seed_demo(db, start)
    ids = store_ids(stores)
    with db.write() as tx:
        if db.dialect == "sqlite":
            tx.run("PRAGMA cache_size = -500000")  # the year's indexes stay in memory while it is written
        partitions.ensure_partitions(tx, today, since=first)  # PostgreSQL: the year's months, made before its sales
        _add_stores(tx, ids, rng, now)
        chain = _add_members(tx, members, ids, rng, start)
        items = [_Item(r[0], r[1], int(r[2]), int(r[3])) for r in
                 tx.all("SELECT sku, unit, price, tax_rate_bp FROM hq_items WHERE active = 1 ORDER BY sku")]
        multiplier = {r[0]: int(r[1]) for r in tx.all("SELECT tier, points_multiplier_pct FROM hq_tiers")}
    stats = ChainStats(stores=len(ids), days=days + 1, members=len(chain))
    order = list(range(len(items)))
    rng.shuffle(order)
    item_cum = list(accumulate(1 / (order[i] + 1) ** 0.9 for i in range(len(items))))
    member_cum = list(accumulate(1 / (i + 10) ** 0.6 for i in range(len(chain))))
    lines_n, lines_cum = [n for n, _ in LINES], list(accumulate(w for _, w in LINES))
    tender_names, tender_cum = [t for t, _ in TENDERS], list(accumulate(w for _, w in TENDERS))
    size = {s: rng.uniform(0.6, 1.4) for s in ids}
    code = {s: "".join(ch for ch in s.upper() if ch.isalnum())[:12] for s in ids}
    receipts = dict.fromkeys(ids, 0)
    events = dict.fromkeys(ids, 0)  # deltas each store's stream would have sent
    hours = {w: list(accumulate(_hour_weights(w))) for w in (False, True)}
    random_ = rng.random

    def pick(cum: list[float] | list[int]) -> int:  # an index drawn by cumulative weights (random.choices, lean)
        return bisect.bisect_right(cum, random_() * cum[-1])

    returns_due: list[tuple[str, str, str, int, str]] = []  # store, sale_id, member, refund, method
    for day_no in range(days + 1):
        day = first + datetime.timedelta(days=day_no)
        weekend = day.isoweekday() >= 6
        season = 1.0 + 0.12 * math.sin(2 * math.pi * (day.timetuple().tm_yday - 40) / 365)
        sales: list[tuple[object, ...]] = []
        lines: list[tuple[object, ...]] = []
        tenders: list[tuple[object, ...]] = []
        ledger: list[tuple[object, ...]] = []
        topups: list[tuple[object, ...]] = []
        rets: list[tuple[object, ...]] = []
        for store_id, sale_id, member_id, refund, _method in returns_due:
            back = datetime.datetime.combine(day, datetime.time(rng.randint(9, 20), rng.randint(0, 59)), tz)
            if back > now:
                continue
            rets.append((f"R{sale_id[1:]}", store_id, 0, sale_id, back.isoformat(timespec="milliseconds"),
                         day.isoformat(), member_id or None, refund, 0))
            events[store_id] += 1
        returns_due = []
        for store_no, store_id in enumerate(ids):
            expected = tickets_per_day * size[store_id] * WEEKDAY_FACTOR[day.isoweekday()] * season
            count = max(0, int(rng.gauss(expected, math.sqrt(expected))))
            cum = hours[weekend]
            midnight = datetime.datetime.combine(day, datetime.time(0), tz)
            stamps = sorted(midnight + datetime.timedelta(hours=pick(cum), seconds=int(random_() * 3600))
                            for _ in range(count))
            for n, when in enumerate(stamps):
                if when > now:
                    break
                at = when.isoformat(timespec="milliseconds")
                sale_id = _sale_id(day_no, store_no, n)
                receipts[store_id] += 1
                subtotal = discount = tax = 0
                for line_no in range(1, lines_n[pick(lines_cum)] + 1):
                    item = items[pick(item_cum)]
                    if item.unit == "kg":
                        weight: int | None = rng.randint(200, 1500)
                        qty, gross = 1, item.price * (weight or 0) // 1000
                    else:
                        weight, qty = None, rng.choices((1, 2, 3), (80, 15, 5))[0]
                        gross = item.price * qty
                    off = gross * rng.choice((5, 10, 15)) // 100 if rng.random() < 0.15 else 0
                    net = gross - off
                    line_tax = net - (net * 10000 + (10000 + item.tax_rate_bp) // 2) // (10000 + item.tax_rate_bp)
                    lines.append((sale_id, line_no, store_id, item.sku, qty, weight, net, off, line_tax,
                                  day.isoformat()))
                    subtotal, discount, tax = subtotal + gross, discount + off, tax + line_tax
                total = subtotal - discount
                member = chain[pick(member_cum)] if random_() < MEMBER_SHARE else None
                spent = earned = 0
                method = tender_names[pick(tender_cum)]
                if member is not None:
                    if member.balance >= total > 0 and rng.random() < STORED_VALUE_SHARE:
                        method, spent = "stored_value", total
                        member.balance -= total
                        ledger.append((member.member_id, "value", -total, "spend", store_id, sale_id, at))
                    earned = total // 100 * multiplier.get(member.tier, 100) // 100
                    if earned:
                        member.points += earned
                        ledger.append((member.member_id, "points", earned, "earn", store_id, sale_id, at))
                sales.append((sale_id, store_id, 0, f"{code[store_id]}-{receipts[store_id]:08d}",
                              f"T{rng.randint(1, 6)}", at, day.isoformat(), member.member_id if member else None,
                              subtotal, discount, total, tax, spent, 0, earned))
                tenders.append((sale_id, 1, method, total, store_id, day.isoformat()))
                events[store_id] += 1
                if random_() < RETURN_SHARE:  # the last line comes back tomorrow
                    returns_due.append((store_id, sale_id, member.member_id if member else "", net, method))
            for _ in range(TOPUPS_PER_STORE_DAY):
                when = datetime.datetime.combine(day, datetime.time(rng.randint(9, 20), rng.randint(0, 59)), tz)
                if when > now:
                    continue
                member = chain[pick(member_cum)]
                amount = rng.choice((10000, 20000, 30000, 50000))
                topup_id = _sale_id(day_no, store_no, 60000 + len(topups))
                at = when.isoformat(timespec="milliseconds")
                member.balance += amount
                topups.append((topup_id, store_id, 0, member.member_id, amount, rng.choice(("wechat", "cash")), at))
                ledger.append((member.member_id, "value", amount, "topup", store_id, topup_id, at))
                events[store_id] += 1
        with db.write() as tx:
            tx.copy("hq_sales", "sale_id, store_id, seq, receipt_no, till_id, at, day, member_id, subtotal, discount, "
                    "total, tax, value_spent, points_redeemed, points_earned", sales)
            tx.copy("hq_sale_lines", "sale_id, line_no, store_id, sku, qty, weight_g, net, discount, tax, day", lines)
            tx.copy("hq_sale_tenders", "sale_id, tender_no, method, amount, store_id, day", tenders)
            tx.copy("hq_returns", "return_id, store_id, seq, sale_id, at, day, member_id, refund_total, "
                    "points_reversed", rets)
            tx.copy("hq_topups", "topup_id, store_id, seq, member_id, amount, method, at", topups)
            tx.copy("hq_member_ledger", "member_id, ledger, delta, kind, store_id, ref, at", ledger)
            tx.copy("hq_digest_checks", "store_id, day, status, detail, checked_at, mismatches",
                    [(s, day.isoformat(), "mismatch" if bad else "match",
                      "sale: store 12/45210 hq 11/43990" if bad else "", now.isoformat(timespec="seconds"), int(bad))
                     for s in ids for bad in (rng.random() < 0.0005,)])
        stats.tickets += len(sales)
        stats.lines += len(lines)
        stats.returns += len(rets)
        stats.topups += len(topups)
        stats.ledger_entries += len(ledger)
        if day_no % 30 == 0 or day == today:
            say(f"{day.isoformat()}: {stats.tickets} tickets, {stats.lines} lines "
                f"({time.perf_counter() - t0:.0f} s)")
    _finish(db, ids, chain, events, rng, now, items)
    refill_rollups(db)
    stats.seconds = round(time.perf_counter() - t0, 1)
    return stats


ROLLUP_TABLES = ("hq_sales_hourly", "hq_store_hours", "hq_store_days", "hq_sku_days", "hq_rule_days")


def refill_rollups(db: HqDb) -> None:
    """The report and dashboard rollups from the sales just written, as HQ builds them at start for sales
    it held before it kept them (storage/schema.py): emptied, then rebuilt by create_schema."""
    with db.write() as tx:
        for table in ROLLUP_TABLES:
            tx.run(f"DELETE FROM {table}")
        tx.run("DELETE FROM hq_meta WHERE key = 'sales_rollups'")
    create_schema(db)


def _finish(db: HqDb, ids: list[str], chain: list[_Member], events: dict[str, int], rng: random.Random,
            now: datetime.datetime, items: list[_Item]) -> None:
    """Members' cached sums and home-store escrow, the stores' stream positions, stock, a few quarantined deltas."""
    at = now.isoformat(timespec="milliseconds")
    with db.write() as tx:
        tx.many("UPDATE hq_members SET balance = ?, points = ? WHERE member_id = ?",
                [(m.balance, m.points, m.member_id) for m in chain])
        tx.run("DELETE FROM hq_escrow")
        tx.copy("hq_escrow", "member_id, store_id, ledger, outstanding",
                [(m.member_id, m.home, ledger, held) for m in chain
                 for ledger, held in (("value", min(m.balance, 20000)), ("points", min(m.points, 2000))) if held])
        for n, store_id in enumerate(ids):
            quarantined = 1 if n % 17 == 5 else 0
            lag = rng.randint(40, 400) if n >= len(ids) - SILENT_STORES else 0
            head = events[store_id] + quarantined
            tx.run("UPDATE hq_stores SET acked_seq = ?, head_seq = ?, sales = (SELECT count(*) FROM hq_sales "
                   "WHERE store_id = ?) WHERE store_id = ?", (head, head + lag, store_id, store_id))
            if quarantined:
                tx.run("""INSERT INTO hq_deltas (store_id, seq, kind, ref, day, amount, status, reason, payload,
                          received_at) VALUES (?, ?, 'sale', ?, ?, 0, 'quarantined', ?, ?, ?)""",
                       (store_id, head, str(uuid.UUID(int=rng.getrandbits(128))), at[:10],
                        "overspend: member M300042 beyond this store's escrow (value 0, points 0)", b"\x80", at))
            tx.copy("hq_stock_levels", "store_id, sku, on_hand, as_of",
                    [(store_id, item.sku, rng.randint(0, 60000 if item.unit == "kg" else 200), at) for item in items])
