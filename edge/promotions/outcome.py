"""What the engine is told about the shopper's coupons and past usage, and what it reports back
besides line amounts: each rule's use (for limits and the sale record), 凑单 hints, coupon problems."""

from __future__ import annotations

import msgspec

from edge.promotions.rules import Promotion


class CouponGrant(msgspec.Struct, frozen=True):
    """A presented coupon that passed the database checks; it unlocks `rule_id` in this basket."""

    code: str
    rule_id: str
    min_spend: int = 0


class RuleUsage(msgspec.Struct, frozen=True):
    """How much of a limited rule is used up: by this member in the rule's current period, and in all."""

    member_uses: int = 0
    uses: int = 0
    amount: int = 0


class RuleUse(msgspec.Struct, frozen=True):
    """One rule as applied to one basket. `bases` is each range line's net just before the rule
    ran (line_no, fen): what a 满减 threshold was measured on, kept for the return clawback."""

    rule: Promotion
    amount: int
    times: int
    coupon: str | None = None
    bases: list[tuple[int, int]] = []


class Hint(msgspec.Struct, frozen=True):
    """凑单提示: a rule the basket misses by `short_by` fen or `short_qty` units, worth `gain` fen."""

    rule_id: str
    name: str
    name_en: str
    short_by: int
    short_qty: int
    gain: int
    text: str
    text_en: str


class CouponIssue(msgspec.Struct, frozen=True):
    """Why a presented coupon did not apply: `coupon_min_spend` (short by `short_by` fen) or
    `coupon_not_applicable` (the basket or shopper does not qualify for its rule)."""

    code: str
    reason: str
    short_by: int = 0
