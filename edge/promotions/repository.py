"""Promotions in the database: the rule book cache, coupon checks, usage counts, sale records.

The quote path needs the compiled rule book on every request, so the hub keeps one in memory and
reloads it only when `settings.promotions_version` changed (every write that changes promotions,
tiers or categories bumps it in the same transaction). Coupons and usage counts are read per quote
(a few indexed rows) and written with the sale, in the sale's transaction, where they are checked
again: a coupon redeemed or a limit reached by another till in the meantime refuses the sale (409).
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import msgspec

from edge.errors import ApiError
from edge.pricing.engine import Tier, tier_rules
from edge.pricing.lines import Quote
from edge.pricing.price_lists import utc_text
from edge.promotions.engine import RuleBook, period_key
from edge.promotions.outcome import CouponGrant, RuleUsage
from edge.promotions.rules import RESERVED_PREFIXES, Promotion, promotion_decoder, promotion_encoder

log = logging.getLogger(__name__)

VERSION_KEY = "promotions_version"


def version(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (VERSION_KEY,)).fetchone()
    return str(row[0]) if row else "0"


def bump_version(conn: sqlite3.Connection) -> None:
    conn.execute(
        """INSERT INTO settings (key, value) VALUES (?, '1')
           ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)""",
        (VERSION_KEY,),
    )


def active_promotions(conn: sqlite3.Connection) -> list[Promotion]:
    out = []
    for rule_id, text in conn.execute("SELECT rule_id, rule FROM promotions WHERE active = 1 ORDER BY rule_id"):
        try:
            out.append(promotion_decoder.decode(text))
        except msgspec.DecodeError as exc:  # one bad row must not stop every quote
            log.error("promotion %s does not decode and is skipped: %s", rule_id, exc)
    return out


def load_book(conn: sqlite3.Connection) -> RuleBook:
    """Promotions, the tiers' discounts and the category tree, compiled into one rule book."""
    current = version(conn)
    rules = active_promotions(conn)
    for row in conn.execute("SELECT tier, name_zh, name_en, discount_bp, points_multiplier_pct FROM tiers"):
        rules += tier_rules(Tier(row[0], row[1], row[2], row[3], row[4]))
    parents = {r[0]: r[1] for r in conn.execute("SELECT category_id, parent_id FROM categories")}
    return RuleBook(rules, parents, version=current)


class PromotionCache:
    """The compiled rule book, reloaded when the version counter moves. Owned by the Hub."""

    def __init__(self) -> None:
        self._book: RuleBook | None = None
        self._lock = threading.Lock()

    def book(self, conn: sqlite3.Connection) -> RuleBook:
        current = version(conn)
        book = self._book
        if book is not None and book.version == current:
            return book
        with self._lock:
            if self._book is None or self._book.version != current:
                self._book = load_book(conn)
            return self._book


# -- coupons ------------------------------------------------------------------------------------------

class Coupon(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A coupon as created and listed; times are RFC 3339."""

    code: str
    rule_id: str
    member_id: str | None = None
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=10**9)] = 1
    min_spend: Annotated[int, msgspec.Meta(ge=0, le=10**10)] = 0  # fen
    starts_at: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None


def _refuse(code: str, message: str, coupon: str) -> ApiError:
    return ApiError(422, code, message, coupon=coupon)


def coupon_grants(conn: sqlite3.Connection, codes: Sequence[str], member_id: str | None, at: datetime.datetime,
                  book: RuleBook) -> tuple[CouponGrant, ...]:
    """Check presented coupon codes; each good one unlocks its rule. Any bad one refuses the request."""
    grants: list[CouponGrant] = []
    now = utc_text(at)
    for code in codes:
        shown = code[:64]
        if any(g.code == code for g in grants):
            raise _refuse("duplicate_coupon", f"coupon {shown} is given twice", shown)
        row = conn.execute(
            """SELECT rule_id, member_id, max_uses, min_spend, starts_at, expires_at,
                      (SELECT count(*) FROM coupon_redemptions r WHERE r.code = c.code)
               FROM coupons c WHERE code = ?""", (code,)).fetchone()
        if row is None:
            raise _refuse("unknown_coupon", f"coupon {shown} is not valid at this store", shown)
        rule_id, owner, max_uses, min_spend, starts_at, expires_at, used = row
        if starts_at is not None and now < starts_at:
            raise _refuse("coupon_not_active", f"coupon {shown} is valid from {starts_at}", shown)
        if expires_at is not None and now >= expires_at:
            raise _refuse("coupon_expired", f"coupon {shown} expired at {expires_at}", shown)
        if owner is not None and owner != member_id:
            raise _refuse("coupon_not_yours", f"coupon {shown} was issued to another member; "
                          "identify that member to use it", shown)
        if used >= max_uses:
            raise _refuse("coupon_used", f"coupon {shown} was already redeemed", shown)
        if rule_id not in book.by_id:
            raise _refuse("coupon_not_applicable", f"the promotion of coupon {shown} is not running", shown)
        if any(g.rule_id == rule_id for g in grants):
            raise _refuse("duplicate_coupon", f"two coupons for the same promotion {rule_id}", shown)
        grants.append(CouponGrant(code, rule_id, min_spend))
    return tuple(grants)


def raise_coupon_issues(quote: Quote) -> None:
    """A coupon the basket cannot use is refused (422) rather than silently ignored."""
    for issue in quote.coupon_issues:
        if issue.reason == "coupon_min_spend":
            raise ApiError(422, "coupon_min_spend",
                           f"coupon {issue.code} needs {issue.short_by} fen more of qualifying items",
                           coupon=issue.code, short_by=issue.short_by)
        raise ApiError(422, issue.reason, f"coupon {issue.code} does not apply to this basket or shopper",
                       coupon=issue.code)


def create_coupon(conn: sqlite3.Connection, coupon: Coupon, at: str) -> None:
    if conn.execute("SELECT 1 FROM promotions WHERE rule_id = ?", (coupon.rule_id,)).fetchone() is None:
        raise ApiError(422, "unknown_rule", f"no promotion {coupon.rule_id}")
    if coupon.member_id is not None and conn.execute(
            "SELECT 1 FROM members WHERE member_id = ?", (coupon.member_id,)).fetchone() is None:
        raise ApiError(422, "unknown_member", f"no member {coupon.member_id}")
    try:
        conn.execute(
            """INSERT INTO coupons (code, rule_id, member_id, max_uses, min_spend, starts_at, expires_at, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (coupon.code, coupon.rule_id, coupon.member_id, coupon.max_uses, coupon.min_spend,
             utc_text(coupon.starts_at) if coupon.starts_at else None,
             utc_text(coupon.expires_at) if coupon.expires_at else None, at))
    except sqlite3.IntegrityError:
        raise ApiError(409, "coupon_exists", f"coupon {coupon.code} already exists") from None


# -- usage --------------------------------------------------------------------------------------------

def usage_for(conn: sqlite3.Connection, book: RuleBook, member_id: str | None,
              at: datetime.datetime) -> dict[str, RuleUsage]:
    """Usage so far of the rules that have limits: this member's in the current period, and in all."""
    limited = {c.rule_id: c.limits for c in book.rules if c.limits.any}
    if not limited:
        return {}
    totals = {r[0]: (r[1], r[2]) for r in conn.execute(
        f"SELECT rule_id, uses, amount FROM promotion_totals WHERE rule_id IN ({','.join('?' * len(limited))})",
        list(limited))}
    mine: dict[tuple[str, str], int] = {}
    if member_id is not None:
        mine = {(r[0], r[1]): r[2] for r in conn.execute(
            "SELECT rule_id, period, uses FROM promotion_usage WHERE member_id = ?", (member_id,))}
    out = {}
    for rule_id, limits in limited.items():
        uses, amount = totals.get(rule_id, (0, 0))
        member_uses = mine.get((rule_id, period_key(limits.period, at)), 0)
        if uses or amount or member_uses:
            out[rule_id] = RuleUsage(member_uses=member_uses, uses=uses, amount=amount)
    return out


def record_sale(conn: sqlite3.Connection, sale_id: str, quote: Quote, member_id: str | None, at: str) -> None:
    """In the sale's transaction: which rules gave what, usage counts, coupon redemptions. Limits and
    coupons are checked again here, against whatever other tills committed since the quote."""
    if not quote.uses:
        return
    when = datetime.datetime.fromisoformat(at)
    store_row = conn.execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()
    store_id = store_row[0] if store_row else ""
    for use in quote.uses:
        rule, limits = use.rule, use.rule.limits
        conn.execute(
            """INSERT INTO sale_promotions (sale_id, rule_id, amount, times, coupon_code, rule, bases)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (sale_id, rule.rule_id, use.amount, use.times, use.coupon, promotion_encoder.encode(rule).decode(),
             msgspec.json.encode(use.bases).decode()))
        uses, amount = conn.execute(
            """INSERT INTO promotion_totals (rule_id, uses, amount) VALUES (?, 1, ?)
               ON CONFLICT (rule_id) DO UPDATE SET uses = uses + 1, amount = amount + excluded.amount
               RETURNING uses, amount""", (rule.rule_id, use.amount)).fetchone()
        if (limits.max_uses is not None and uses > limits.max_uses) or \
                (limits.budget is not None and amount > limits.budget):
            raise ApiError(409, "promotion_exhausted", f"promotion {rule.rule_id} ran out meanwhile; quote again",
                           rule_id=rule.rule_id)
        if member_id is not None and limits.per_member is not None:
            (mine,) = conn.execute(
                """INSERT INTO promotion_usage (rule_id, member_id, period, uses, amount) VALUES (?, ?, ?, 1, ?)
                   ON CONFLICT (member_id, rule_id, period) DO UPDATE
                   SET uses = uses + 1, amount = amount + excluded.amount RETURNING uses""",
                (rule.rule_id, member_id, period_key(limits.period, when), use.amount)).fetchone()
            if mine > limits.per_member:
                raise ApiError(409, "promotion_exhausted",
                               f"member {member_id} already used promotion {rule.rule_id}; quote again",
                               rule_id=rule.rule_id)
        if use.coupon is not None:
            redeem(conn, use.coupon, sale_id, store_id, member_id, at)


def redeem(conn: sqlite3.Connection, code: str, sale_id: str, store_id: str, member_id: str | None, at: str) -> None:
    row = conn.execute(
        "SELECT max_uses, (SELECT count(*) FROM coupon_redemptions WHERE code = ?) FROM coupons WHERE code = ?",
        (code, code)).fetchone()
    if row is None:
        raise ApiError(422, "unknown_coupon", f"coupon {code} is not valid at this store", coupon=code)
    max_uses, used = row
    if used >= max_uses:
        raise ApiError(409, "coupon_used", f"coupon {code} was redeemed by another sale meanwhile", coupon=code)
    try:
        conn.execute("""INSERT INTO coupon_redemptions (code, use_no, sale_id, store_id, member_id, at)
                        VALUES (?, ?, ?, ?, ?, ?)""", (code, used + 1, sale_id, store_id, member_id, at))
    except sqlite3.IntegrityError:
        raise ApiError(409, "coupon_used", f"coupon {code} was already redeemed", coupon=code) from None


# -- promotions ----------------------------------------------------------------------------------------

def create_promotion(conn: sqlite3.Connection, promo: Promotion, user_id: str | None, at: str) -> None:
    if promo.rule_id.startswith(RESERVED_PREFIXES):
        raise ApiError(422, "reserved_rule_id", "rule ids starting with tier: or member_price are the hub's own")
    try:
        conn.execute(
            """INSERT INTO promotions (rule_id, rule, active, source, created_by, created_at, updated_at)
               VALUES (?, ?, 1, 'local', ?, ?, ?)""",
            (promo.rule_id, promotion_encoder.encode(promo).decode(), user_id, at, at))
    except sqlite3.IntegrityError:
        raise ApiError(409, "rule_exists", f"promotion {promo.rule_id} already exists") from None
    bump_version(conn)


class PromotionFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A file of promotions and coupons in the documented format (the demo store's seed)."""

    promotions: list[Promotion]
    coupons: list[Coupon] = []


def seed_promotions(conn: sqlite3.Connection, path: Path, at: str) -> int:
    """Load a promotion file as HQ's own data (source 'hq'); returns how many promotions."""
    loaded = msgspec.json.decode(path.read_bytes(), type=PromotionFile)
    for promo in loaded.promotions:
        conn.execute(
            """INSERT INTO promotions (rule_id, rule, active, source, created_by, created_at, updated_at)
               VALUES (?, ?, 1, 'hq', 'system', ?, ?)""",
            (promo.rule_id, promotion_encoder.encode(promo).decode(), at, at))
    for coupon in loaded.coupons:
        create_coupon(conn, coupon, at)
    bump_version(conn)
    return len(loaded.promotions)
