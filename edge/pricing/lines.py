"""The shapes pricing works on: resolved basket lines and the shopper's context in, priced lines out.

Shared by the promotion engine and `price_basket`; no logic here.
"""

from __future__ import annotations

import datetime

import msgspec

from edge.promotions.outcome import CouponGrant, CouponIssue, Hint, RuleUsage, RuleUse


class PricingItem(msgspec.Struct, frozen=True):
    sku: str
    name_zh: str
    name_en: str
    category: str
    unit: str
    price: int
    tax_rate_bp: int
    brand: str = ""
    tags: tuple[str, ...] = ()
    member_price: int | None = None  # the shopper's tier price in force, from a tier price list


class BasketLine(msgspec.Struct, frozen=True):
    """A resolved line: `gross` is the line's undiscounted price in fen."""

    line_no: int
    item: PricingItem
    qty: int
    weight_g: int | None
    barcode: str | None
    unit_price: int
    gross: int


class Tier(msgspec.Struct, frozen=True):
    tier: str
    name_zh: str
    name_en: str
    discount_bp: int = 0
    points_multiplier_pct: int = 100


class Applied(msgspec.Struct, frozen=True, omit_defaults=True):
    """One rule's amount on one line, with the rule's names and, for promotions, why (`note`)."""

    rule_id: str
    name: str
    name_en: str
    amount: int
    points_pct: int = 0  # a points multiplier rule: points on this line x points_pct/100
    note: str = ""
    note_en: str = ""


class PricedLine(msgspec.Struct, frozen=True):
    line_no: int
    sku: str
    name: str
    name_en: str
    barcode: str | None
    unit: str
    qty: int
    weight_g: int | None
    unit_price: int
    gross: int
    discount: int
    net: int
    tax: int
    tax_rate_bp: int
    applied: list[Applied]
    category: str


class Quote(msgspec.Struct, frozen=True):
    lines: list[PricedLine]
    subtotal: int
    discount: int
    total: int
    tax: int
    points_earned: int
    member_id: str | None = None
    tier: str | None = None
    points_weight: int = 0  # sum of net x points percent over lines; points = weight // 10000
    uses: list[RuleUse] = []
    hints: list[Hint] = []
    coupon_issues: list[CouponIssue] = []


class Context(msgspec.Struct, frozen=True):
    member_id: str | None = None
    tier: Tier | None = None
    member_tags: tuple[str, ...] = ()
    store_id: str | None = None
    at: datetime.datetime | None = None  # store-local time of the quote; None skips time windows
    coupons: tuple[CouponGrant, ...] = ()
    usage: dict[str, RuleUsage] = {}
