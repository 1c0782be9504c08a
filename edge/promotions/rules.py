"""The promotion rule format: one tree of msgspec Structs, decoded strictly (docs/promotions.md).

A rule says who may get it (`eligibility`), which items it looks at (`items`), what the basket must
hold of them (`condition`), what it gives (`benefit`, a tagged union on `kind`), where it sits in the
order (`priority`, ties broken by `rule_id`), how it stacks with others (`stacking`) and how often it
may be given (`limits`). Unknown fields are refused even on the wire: a hub that silently ignored a
newer restriction (say, a new eligibility field) would give away discounts HQ never meant.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Fen = Annotated[int, Meta(ge=0, le=100_000_000)]
PositiveFen = Annotated[int, Meta(ge=1, le=100_000_000)]
Bp = Annotated[int, Meta(ge=1, le=10_000)]  # basis points: 1000 = 10 %
Count = Annotated[int, Meta(ge=1, le=9_999)]
RuleId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Name = Annotated[str, Meta(min_length=1, max_length=100)]
Key = Annotated[str, Meta(min_length=1, max_length=64)]
Clock = Annotated[str, Meta(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
Instant = Annotated[datetime.datetime, Meta(tz=True)]
Weekday = Annotated[int, Meta(ge=1, le=7)]  # ISO: 1 = Monday, 7 = Sunday

RESERVED_PREFIXES = ("tier:", "member_price")  # built-in rules the hub makes itself


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


# -- benefits ---------------------------------------------------------------------------------------

class PercentOff(_Strict, frozen=True, tag="percent_off", tag_field="kind"):
    """`discount_bp` off every line in range (1000 = 10 % off, 九折), half-up per line."""

    discount_bp: Bp


class AmountOff(_Strict, frozen=True, tag="amount_off", tag_field="kind"):
    """`amount` off once over the range (per="basket", shared out by value) or off each unit."""

    amount: PositiveFen
    per: Literal["basket", "unit"] = "basket"


class FixedPrice(_Strict, frozen=True, tag="fixed_price", tag_field="kind"):
    """`qty` units for `price` (特价 when qty is 1, "3 for 10 yuan" when 3). Weighed items take
    `price` per kg when qty is 1 and are left out of bundles."""

    price: Fen
    qty: Count = 1


class BuyNGetM(_Strict, frozen=True, tag="buy_n_get_m", tag_field="kind"):
    """Every group of `buy` + `get` units: the `get` cheapest take `discount_bp` off (10000 = free)."""

    buy: Count
    get: Count
    discount_bp: Bp = 10_000


class SpendGetOff(_Strict, frozen=True, tag="spend_get_off", tag_field="kind"):
    """满`threshold`减`off` once, or 每满`threshold`减`off` when `repeat` (at most `max_times`)."""

    threshold: PositiveFen
    off: PositiveFen
    repeat: bool = False
    max_times: Count | None = None


class PointsMultiplier(_Strict, frozen=True, tag="points_multiplier", tag_field="kind"):
    """Points on the range's net are multiplied by `multiplier_pct`/100 (200 = double points)."""

    multiplier_pct: Annotated[int, Meta(ge=100, le=10_000)]


class FreeGift(_Strict, frozen=True, tag="free_gift", tag_field="kind"):
    """`qty` units of `sku` free when the condition holds (the cashier scans the gift)."""

    sku: Key
    qty: Count = 1


Benefit = PercentOff | AmountOff | FixedPrice | BuyNGetM | SpendGetOff | PointsMultiplier | FreeGift


# -- the rest of a rule ------------------------------------------------------------------------------

class ItemRange(_Strict, frozen=True):
    """Which items a rule looks at. Empty include lists mean every item; otherwise an item is in
    range when it matches any of them (a category includes its sub-categories), unless excluded."""

    skus: list[Key] = []
    categories: list[Key] = []
    brands: list[Key] = []
    tags: list[Key] = []
    exclude_skus: list[Key] = []
    exclude_categories: list[Key] = []

    @property
    def everything(self) -> bool:
        return not (self.skus or self.categories or self.brands or self.tags)


class HourWindow(_Strict, frozen=True):
    """Store-local time of day, start inclusive, end exclusive ("17:00"-"21:00")."""

    start: Clock
    end: Clock


class Eligibility(_Strict, frozen=True):
    members_only: bool = False
    tiers: list[Key] = []  # member tiers; non-empty implies members only
    member_tags: list[Key] = []  # the member must carry one of these tags
    stores: list[Key] = []  # store ids; empty = every store
    starts_at: Instant | None = None
    ends_at: Instant | None = None  # exclusive
    weekdays: list[Weekday] = []
    hours: list[HourWindow] = []
    coupon: bool = False  # only with a valid coupon issued for this rule


class Condition(_Strict, frozen=True):
    """What the basket must hold of the range: units (not yet used by another rule) and value."""

    min_qty: Annotated[int, Meta(ge=0, le=9_999)] = 0
    min_value: Fen = 0


class Limits(_Strict, frozen=True):
    per_basket: Count | None = None  # applications per basket: groups, multiples or units
    per_member: Count | None = None  # sales per member per `period`
    period: Literal["day", "week", "month", "all"] = "all"
    max_uses: Annotated[int, Meta(ge=1, le=10**9)] | None = None  # sales, all members together (this hub until sync)
    budget: Annotated[int, Meta(ge=1, le=10**12)] | None = None  # fen of discount, all sales together

    @property
    def any(self) -> bool:
        return self.per_member is not None or self.max_uses is not None or self.budget is not None


Stacking = Literal["combinable", "exclusive", "stop"]


class Promotion(_Strict, frozen=True):
    rule_id: RuleId
    name: Name  # zh-CN, as on the receipt
    name_en: Name
    benefit: Benefit
    items: ItemRange = ItemRange()
    condition: Condition = Condition()
    eligibility: Eligibility = Eligibility()
    priority: Annotated[int, Meta(ge=-1_000_000, le=1_000_000)] = 0
    stacking: Stacking = "combinable"
    combinable_with: list[RuleId] = []
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        e = self.eligibility
        if e.starts_at is not None and e.ends_at is not None and e.ends_at <= e.starts_at:
            raise ValueError("eligibility.ends_at must be after starts_at")
        for window in e.hours:
            if window.end <= window.start:
                raise ValueError(f"eligibility.hours: {window.start}-{window.end} ends before it starts")
        if self.rule_id in self.combinable_with:
            raise ValueError("a rule cannot list itself in combinable_with")


promotion_decoder = msgspec.json.Decoder(Promotion)
promotion_encoder = msgspec.json.Encoder(order="deterministic")
