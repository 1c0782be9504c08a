"""Tier rules as data, and the one pure evaluation both HQ and a standalone hub run (docs/members.md).

A tier definition (`TierRule`) names a metric over a rolling window — spend (fen, net of returns),
points earned, or visits (tickets) — a threshold, and a rank; its benefits (discount, points
multiplier) stay in the tiers table and feed pricing as before. `evaluate` takes the definitions, a
member's window figures, the current tier and review date, and today, and answers the tier the
member holds after today, the next review date and why. No I/O, no clock: HQ (chain-wide figures
from its sales and returns) and a standalone hub (its own sales) call it the same way.

- Upgrade: as soon as the figures reach a higher tier's threshold (threshold included).
- Downgrade: only on or after the member's review date; a member who still qualifies on the review
  date keeps the tier for another period.
- A member with no review date (tiers set before rules existed) starts the clock: no downgrade now.
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Metric = Literal["spend", "points", "visits"]
TierId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Months = Annotated[int, Meta(ge=1, le=60)]
Threshold = Annotated[int, Meta(ge=0, le=10_000_000_000)]  # fen: ¥100,000,000 at most

DEFAULT_WINDOW_MONTHS = 12
DEFAULT_REVIEW_MONTHS = 12


class TierRule(msgspec.Struct, frozen=True):
    """Reaching `threshold` of `metric` over the window qualifies for `tier`; higher `rank` is better."""

    tier: str
    rank: int
    metric: Metric
    threshold: int


class Figures(msgspec.Struct, frozen=True):
    """A member's totals over the window: spend in fen (sales less refunds), points earned (less points
    reversed on returns), visits (tickets)."""

    spend: int = 0
    points: int = 0
    visits: int = 0

    def of(self, metric: Metric) -> int:
        return self.spend if metric == "spend" else self.points if metric == "points" else self.visits


class TierDef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One tier as the admin API reads and writes it: its benefits (pricing) and its rule."""

    tier: TierId
    name_zh: Annotated[str, Meta(min_length=1, max_length=32)]
    name_en: Annotated[str, Meta(min_length=1, max_length=32)]
    discount_bp: Annotated[int, Meta(ge=0, le=9_000)] = 0
    points_multiplier_pct: Annotated[int, Meta(ge=0, le=1_000)] = 100
    rank: Annotated[int, Meta(ge=0, le=99)] = 0
    metric: Metric = "spend"
    threshold: Threshold = 0

    @property
    def rule(self) -> TierRule:
        return TierRule(self.tier, self.rank, self.metric, self.threshold)


class TierSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`GET/PUT /hq/v1/tiers` and `/api/v1/tiers`: every tier, the window and the review period."""

    tiers: Annotated[list[TierDef], Meta(min_length=1, max_length=20)]
    window_months: Months = DEFAULT_WINDOW_MONTHS
    review_months: Months = DEFAULT_REVIEW_MONTHS


class TierChange(msgspec.Struct, frozen=True):
    """A recorded tier change (`member_tier_changes` / `hq_member_tier_changes`): what member-facing
    features (tier-up congratulations, history) read."""

    change_id: int
    member_id: str
    from_tier: str
    to_tier: str
    at: str
    reason: str


class Decision(msgspec.Struct, frozen=True):
    tier: str
    review_on: datetime.date
    reason: str  # upgrade, downgrade, renewed, held, started, unknown_tier, unchanged
    from_tier: str

    @property
    def changed(self) -> bool:
        return self.tier != self.from_tier


def add_months(day: datetime.date, months: int) -> datetime.date:
    """The same day `months` later (or earlier), clamped to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def window_start(today: datetime.date, months: int = DEFAULT_WINDOW_MONTHS) -> datetime.date:
    """First day of the rolling window that ends today (inclusive): 12 months back, plus one day."""
    return add_months(today, -months) + datetime.timedelta(days=1)


def qualifying(rules: Sequence[TierRule], figures: Figures) -> TierRule:
    """The highest-ranked tier whose threshold the figures reach (the lowest tier if none)."""
    ordered = sorted(rules, key=lambda r: r.rank)
    best = ordered[0]
    for rule in ordered:
        if figures.of(rule.metric) >= rule.threshold:
            best = rule
    return best


def evaluate(rules: Sequence[TierRule], figures: Figures, current: str, review_on: datetime.date | None,
             today: datetime.date, review_months: int = DEFAULT_REVIEW_MONTHS) -> Decision:
    """The tier a member holds after today's figures, the next review date, and why."""
    if not rules:
        raise ValueError("no tier rules")
    by_tier = {r.tier: r for r in rules}
    target = qualifying(rules, figures)
    next_review = add_months(today, review_months)
    held = by_tier.get(current)
    if held is None:
        return Decision(target.tier, next_review, "unknown_tier", current)
    if target.rank > held.rank:
        return Decision(target.tier, next_review, "upgrade", current)
    if review_on is None:
        return Decision(current, next_review, "started", current)
    if today < review_on:
        return Decision(current, review_on, "held" if target.rank < held.rank else "unchanged", current)
    if target.rank < held.rank:
        return Decision(target.tier, next_review, "downgrade", current)
    return Decision(current, next_review, "renewed", current)


def check_settings(settings: TierSettings, existing: Sequence[str] = ()) -> str | None:
    """`check_rules`, and every tier that exists already is still there (members hold them)."""
    missing = sorted(set(existing) - {t.tier for t in settings.tiers})
    if missing:
        return f"tiers cannot be removed: {', '.join(missing)} missing"
    return check_rules([t.rule for t in settings.tiers])


def check_rules(rules: Sequence[TierRule]) -> str | None:
    """Why a set of tier definitions cannot be used, or None: tiers and ranks unique, one lowest tier
    with threshold 0 (every member qualifies for it)."""
    if not rules:
        return "at least one tier is needed"
    if len({r.tier for r in rules}) != len(rules):
        return "tier ids must be unique"
    if len({r.rank for r in rules}) != len(rules):
        return "ranks must be unique"
    lowest = min(rules, key=lambda r: r.rank)
    if lowest.threshold != 0:
        return f"the lowest tier ({lowest.tier}) must have threshold 0"
    return None
