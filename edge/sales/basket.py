"""Turn a till's lines into priced lines: resolve codes, check quantities, price the basket."""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Sequence

import msgspec

from edge.catalog.barcodes import VariableMeasureLayout
from edge.catalog.models import Item
from edge.catalog.repository import ScanCache, Scanned, item_by_sku, resolve_cached
from edge.clock import StoreClock
from edge.config import HubConfig
from edge.errors import ApiError
from edge.members import points as member_points
from edge.members.auto_tags import effective_tags
from edge.money import div_half_up
from edge.pricing.engine import BasketLine, Context, PricingItem, Quote, RuleBook, Tier, price_basket
from edge.pricing.price_lists import PriceBoard
from edge.promotions import repository as promotions
from edge.sales.models import LineIn

MAX_LINE_FEN = 10_000_000  # 100,000 yuan on one line is a typo, not a sale


def _pricing_item(item: Item, member_price: int | None = None) -> PricingItem:
    return PricingItem(
        sku=item.sku,
        name_zh=item.name_zh,
        name_en=item.name_en,
        category=item.category,
        unit=item.unit,
        price=item.price,
        tax_rate_bp=item.tax_rate_bp,
        brand=item.brand,
        tags=tuple(item.tags),
        member_price=member_price,
    )


def resolve_line(conn: sqlite3.Connection, layout: VariableMeasureLayout, line_no: int, line: LineIn,
                 prices: PriceBoard | None = None, scans: dict[str, Scanned] | None = None) -> BasketLine:
    where = f"lines[{line_no - 1}]"
    if (line.barcode is None) == (line.sku is None):
        raise ApiError(400, "invalid_line", f"{where}: give exactly one of barcode or sku", line_no=line_no)
    embedded_weight: int | None = None
    embedded_price: int | None = None
    if line.barcode is not None:
        try:
            found = resolve_cached(conn, line.barcode, layout, scans)
        except ApiError as err:
            status = 400 if err.status == 400 else 422
            raise ApiError(status, err.code, f"{where}: {err.message}", line_no=line_no) from None
        item, embedded_weight, embedded_price = found.item, found.weight_g, found.embedded_price
    else:
        assert line.sku is not None
        by_sku = item_by_sku(conn, line.sku)
        if by_sku is None:
            raise ApiError(422, "unknown_item", f"{where}: no item with sku {line.sku[:64]}", line_no=line_no)
        item = by_sku
    member_price = None
    if prices is not None:  # the price in force now (price lists), recorded on the line as unit_price
        item, member_price = prices.apply(conn, item)
    pitem = _pricing_item(item, member_price)

    def bad(code: str, message: str) -> ApiError:
        return ApiError(400, code, f"{where}: {message}", line_no=line_no)

    if embedded_price is not None:
        # A price label: the label's price is the line price; weight derived for stock.
        if line.qty not in (None, 1) or line.weight_g is not None:
            raise bad("invalid_quantity", "a price label is one line of quantity 1")
        if item.unit == "kg":
            weight = div_half_up(embedded_price * 1000, item.price) if item.price else None
            return BasketLine(line_no, pitem, 1, weight, line.barcode, item.price, embedded_price)
        return BasketLine(line_no, pitem, 1, None, line.barcode, embedded_price, embedded_price)
    if item.unit == "kg":
        if line.qty not in (None, 1):
            raise bad("invalid_quantity", f"{item.sku} is sold by weight; send weight_g")
        if embedded_weight is not None and line.weight_g is not None and line.weight_g != embedded_weight:
            raise bad("invalid_quantity", "weight_g disagrees with the label's weight")
        weight = embedded_weight if embedded_weight is not None else line.weight_g
        if weight is None:
            raise bad("weight_required", f"{item.sku} is sold by weight; send weight_g")
        gross = div_half_up(item.price * weight, 1000)
        return BasketLine(line_no, pitem, 1, weight, line.barcode, item.price, _checked(gross, where, line_no))
    if line.weight_g is not None:
        raise bad("invalid_quantity", f"{item.sku} is counted; send qty, not weight_g")
    qty = line.qty if line.qty is not None else 1
    return BasketLine(line_no, pitem, qty, None, line.barcode, item.price, _checked(item.price * qty, where, line_no))


def _checked(gross: int, where: str, line_no: int) -> int:
    if gross > MAX_LINE_FEN:
        raise ApiError(422, "line_too_large", f"{where}: line amount exceeds the per-line limit", line_no=line_no)
    return gross


def member_context(conn: sqlite3.Connection, member_id: str | None) -> Context:
    if member_id is None:
        return Context()
    row = conn.execute(
        """SELECT m.member_id, t.tier, t.name_zh, t.name_en, t.discount_bp, t.points_multiplier_pct, m.tags,
                  m.auto_tags
           FROM members m JOIN tiers t ON t.tier = m.tier WHERE m.member_id = ?""",
        (member_id,),
    ).fetchone()
    if row is None:
        raise ApiError(422, "unknown_member", f"no member {member_id[:64]}")
    tags = effective_tags(row[6], row[7])  # manual and automatic tags both make a member eligible
    return Context(member_id=row[0], tier=Tier(row[1], row[2], row[3], row[4], row[5]), member_tags=tags)


def quote_lines(
    conn: sqlite3.Connection, layout: VariableMeasureLayout, lines: list[LineIn], member_id: str | None,
    coupon_codes: Sequence[str] = (), *, book: RuleBook | None = None, at: datetime.datetime | None = None,
    store_id: str | None = None, scan_cache: ScanCache | None = None,
) -> Quote:
    """Price a till's lines with the prices in force and the promotions running at `at` (store-local;
    now by default). `book` is the hub's cached rule book; without one it is loaded from the database.
    Unknown, expired, used or inapplicable coupons are refused with 422."""
    at = at or StoreClock(HubConfig().timezone).now()
    if store_id is None:
        row = conn.execute("SELECT value FROM settings WHERE key = 'store_id'").fetchone()
        store_id = str(row[0]) if row else HubConfig().store_id
    member_error: ApiError | None = None
    try:
        ctx = member_context(conn, member_id)
    except ApiError as exc:  # a bad line is reported before a bad member, as it always was
        ctx, member_error = Context(), exc
    board = PriceBoard(store_id, ctx.tier.tier if ctx.tier else None, at)
    scans = scan_cache.for_version(conn, layout) if scan_cache is not None else None
    basket = [resolve_line(conn, layout, i, line, board, scans) for i, line in enumerate(lines, start=1)]
    if member_error is not None:
        raise member_error
    rewards = [b for b, line in zip(basket, lines, strict=True) if line.reward]  # paid with points, not priced
    if rewards and member_id is None:
        raise ApiError(422, "member_required", "reward lines (积分兑换) need a member_id")
    basket = [b for b, line in zip(basket, lines, strict=True) if not line.reward]
    book = book if book is not None else promotions.load_book(conn)
    ctx = msgspec.structs.replace(
        ctx, store_id=store_id, at=at,
        coupons=promotions.coupon_grants(conn, coupon_codes, member_id, at, book) if coupon_codes else (),
        usage=promotions.usage_for(conn, book, member_id, at))
    quote = price_basket(basket, ctx, book)
    promotions.raise_coupon_issues(quote)
    return member_points.price_rewards(conn, quote, rewards)
