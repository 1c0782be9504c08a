"""Automatic member tags: definitions as data, and the one pure evaluator HQ and a standalone hub run.

A tag rule (`TagRule`, a tagged union on `kind`) says when a member carries the tag `name`:

- `high_value`: spend over the last `window_days` days (net of discounts) reaches `min_spend` fen.
- `price_sensitive`: of that spend, the share on discounted lines reaches `min_share_bp`
  (with at least `min_tickets` tickets, so one discounted purchase does not make a bargain hunter).
- `category_preference`: the top category's share of the spend reaches `min_share_bp` (with at least
  `min_tickets` tickets); the tag is `name:category_id` (`prefers:fruit`).
- `dormant`: no purchase for `days` days or more (counted from joining when there is none).
- `birthday_month`: the member's birthday falls in the current month.
- `new_member`: joined less than `days` days ago (the joining day is day 0).

Automatic tags live beside the manual ones (a separate column), so a recompute never removes a
manual tag; promotion eligibility and member search look at both.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Annotated

import msgspec
from msgspec import Meta

from edge.lazy_import import LazyDecoder

TagName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Days = Annotated[int, Meta(ge=1, le=3660)]
ShareBp = Annotated[int, Meta(ge=1, le=10_000)]
Fen = Annotated[int, Meta(ge=1, le=10_000_000_000)]
Tickets = Annotated[int, Meta(ge=1, le=10_000)]


class _Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    name: TagName


class HighValue(_Rule, frozen=True, tag="high_value"):
    min_spend: Fen
    window_days: Days = 365


class PriceSensitive(_Rule, frozen=True, tag="price_sensitive"):
    min_share_bp: ShareBp
    min_tickets: Tickets = 3
    window_days: Days = 365


class CategoryPreference(_Rule, frozen=True, tag="category_preference"):
    min_share_bp: ShareBp
    min_tickets: Tickets = 3
    window_days: Days = 365


class Dormant(_Rule, frozen=True, tag="dormant"):
    days: Days


class BirthdayMonth(_Rule, frozen=True, tag="birthday_month"):
    pass


class NewMember(_Rule, frozen=True, tag="new_member"):
    days: Days


TagRule = HighValue | PriceSensitive | CategoryPreference | Dormant | BirthdayMonth | NewMember


class Spend(msgspec.Struct, frozen=True, array_like=True):
    """Net spend on one day in one category, and the part of it on discounted lines."""

    day: datetime.date
    category: str
    net: int
    discounted: int = 0


class History(msgspec.Struct, frozen=True):
    """What the evaluator knows of one member: when they joined, their birthday, and purchases."""

    joined_on: datetime.date
    birthday: datetime.date | None = None
    tickets: list[datetime.date] = []  # one date per sale in the window the rules look at
    spend: list[Spend] = []
    last_purchase_on: datetime.date | None = None  # the last sale ever (may be older than the window)


def history_days(rules: Sequence[TagRule]) -> int:
    """How many days of purchases the rules look at (the adapter reads no more than that)."""
    return max([r.window_days for r in rules if isinstance(r, HighValue | PriceSensitive | CategoryPreference)],
               default=0)


def _since(day: datetime.date, today: datetime.date, days: int) -> bool:
    """`day` falls in the last `days` days, today included."""
    return today - datetime.timedelta(days=days) < day <= today


def auto_tags(rules: Sequence[TagRule], history: History, today: datetime.date) -> list[str]:
    """The automatic tags a member carries today, sorted. Pure."""
    tags: set[str] = set()
    for rule in rules:
        match rule:
            case HighValue(name=name, min_spend=min_spend, window_days=days):
                if sum(s.net for s in history.spend if _since(s.day, today, days)) >= min_spend:
                    tags.add(name)
            case PriceSensitive(name=name, min_share_bp=share, min_tickets=n, window_days=days):
                spend = [s for s in history.spend if _since(s.day, today, days)]
                total = sum(s.net for s in spend)
                visits = sum(1 for t in history.tickets if _since(t, today, days))
                if total > 0 and visits >= n and sum(s.discounted for s in spend) * 10_000 >= share * total:
                    tags.add(name)
            case CategoryPreference(name=name, min_share_bp=share, min_tickets=n, window_days=days):
                by_category: dict[str, int] = {}
                for s in history.spend:
                    if _since(s.day, today, days):
                        by_category[s.category] = by_category.get(s.category, 0) + s.net
                total = sum(by_category.values())
                visits = sum(1 for t in history.tickets if _since(t, today, days))
                if total > 0 and visits >= n:
                    top, amount = max(sorted(by_category.items()), key=lambda kv: kv[1])  # ties: first id
                    if amount * 10_000 >= share * total:
                        tags.add(f"{name}:{top}")
            case Dormant(name=name, days=days):
                seen = [t for t in (*history.tickets, history.last_purchase_on) if t is not None and t <= today]
                last = max(seen, default=history.joined_on)
                if (today - last).days >= days:
                    tags.add(name)
            case BirthdayMonth(name=name):
                if history.birthday is not None and history.birthday.month == today.month:
                    tags.add(name)
            case NewMember(name=name, days=days):
                if 0 <= (today - history.joined_on).days < days:
                    tags.add(name)
    return sorted(tags)


class TagRuleSet(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`GET/PUT /hq/v1/tag-rules` and `/api/v1/tag-rules`: the automatic tag definitions, in order."""

    rules: Annotated[list[TagRule], Meta(max_length=50)]


tag_rule_decoder = LazyDecoder(lambda: msgspec.json.Decoder(TagRule))  # built on first use


def check_rules(rules: Sequence[TagRule]) -> str | None:
    """Why a set of tag rules cannot be used, or None (names unique)."""
    if len({r.name for r in rules}) != len(rules):
        return "tag names must be unique"
    return None


DEFAULT_RULES: list[TagRule] = [
    HighValue(name="high_value", min_spend=500_000),
    PriceSensitive(name="price_sensitive", min_share_bp=5_000),
    CategoryPreference(name="prefers", min_share_bp=4_000),
    Dormant(name="dormant", days=90),
    BirthdayMonth(name="birthday_month"),
    NewMember(name="new_member", days=30),
]
