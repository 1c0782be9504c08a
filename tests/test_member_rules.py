"""Tier rules and automatic tags on a fixed clock (edge/members/tiering.py, edge/members/tagging.py)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.members import tagging, tiering
from edge.members.tagging import (
    BirthdayMonth,
    CategoryPreference,
    Dormant,
    HighValue,
    History,
    NewMember,
    PriceSensitive,
    Spend,
)
from edge.members.tiering import Figures, TierRule

D = datetime.date
TODAY = D(2026, 6, 15)

SPEND_RULES = [TierRule("regular", 0, "spend", 0), TierRule("silver", 1, "spend", 100_000),
               TierRule("gold", 2, "spend", 500_000)]


# -- tiers ------------------------------------------------------------------------------------------------

def test_upgrade_exactly_at_the_threshold_and_not_one_fen_below() -> None:
    below = tiering.evaluate(SPEND_RULES, Figures(spend=99_999), "regular", D(2027, 1, 1), TODAY)
    assert (below.tier, below.reason, below.changed) == ("regular", "unchanged", False)
    at = tiering.evaluate(SPEND_RULES, Figures(spend=100_000), "regular", D(2027, 1, 1), TODAY)
    assert (at.tier, at.reason, at.changed, at.from_tier) == ("silver", "upgrade", True, "regular")
    assert at.review_on == D(2027, 6, 15)


def test_upgrade_skips_tiers_when_the_figures_reach_the_top() -> None:
    d = tiering.evaluate(SPEND_RULES, Figures(spend=500_000), "regular", None, TODAY)
    assert (d.tier, d.reason) == ("gold", "upgrade")


def test_no_downgrade_before_the_review_date_downgrade_on_it() -> None:
    review = D(2026, 6, 16)
    held = tiering.evaluate(SPEND_RULES, Figures(spend=100_000), "gold", review, TODAY)
    assert (held.tier, held.reason, held.review_on) == ("gold", "held", review)
    on = tiering.evaluate(SPEND_RULES, Figures(spend=100_000), "gold", review, review)
    assert (on.tier, on.reason, on.review_on) == ("silver", "downgrade", D(2027, 6, 16))
    to_bottom = tiering.evaluate(SPEND_RULES, Figures(spend=99_999), "gold", review, D(2026, 7, 1))
    assert (to_bottom.tier, to_bottom.reason) == ("regular", "downgrade")


def test_still_qualifying_on_the_review_date_renews_the_tier() -> None:
    d = tiering.evaluate(SPEND_RULES, Figures(spend=600_000), "gold", TODAY, TODAY)
    assert (d.tier, d.reason, d.review_on, d.changed) == ("gold", "renewed", D(2027, 6, 15), False)


def test_no_review_date_starts_the_clock_instead_of_downgrading() -> None:
    d = tiering.evaluate(SPEND_RULES, Figures(), "gold", None, TODAY)
    assert (d.tier, d.reason, d.review_on) == ("gold", "started", D(2027, 6, 15))


def test_review_period_is_configurable() -> None:
    d = tiering.evaluate(SPEND_RULES, Figures(spend=100_000), "regular", None, TODAY, review_months=6)
    assert d.review_on == D(2026, 12, 15)


def test_visits_and_points_rules() -> None:
    rules = [TierRule("regular", 0, "visits", 0), TierRule("silver", 1, "visits", 12),
             TierRule("gold", 2, "points", 5_000)]
    assert tiering.evaluate(rules, Figures(visits=11, points=4_999), "regular", None, TODAY).tier == "regular"
    assert tiering.evaluate(rules, Figures(visits=12, points=4_999), "regular", None, TODAY).tier == "silver"
    assert tiering.evaluate(rules, Figures(visits=0, points=5_000), "regular", None, TODAY).tier == "gold"
    # spend does not count for a visits or points rule
    assert tiering.evaluate(rules, Figures(spend=10**9), "regular", None, TODAY).tier == "regular"


def test_a_tier_no_longer_defined_moves_to_the_qualifying_one() -> None:
    d = tiering.evaluate(SPEND_RULES, Figures(spend=100_000), "platinum", D(2030, 1, 1), TODAY)
    assert (d.tier, d.reason) == ("silver", "unknown_tier")


def test_window_and_month_arithmetic() -> None:
    assert tiering.window_start(D(2026, 6, 15)) == D(2025, 6, 16)
    assert tiering.window_start(D(2026, 3, 1)) == D(2025, 3, 2)
    assert tiering.add_months(D(2026, 1, 31), 1) == D(2026, 2, 28)
    assert tiering.add_months(D(2024, 2, 29), 12) == D(2025, 2, 28)
    assert tiering.add_months(D(2026, 12, 10), 1) == D(2027, 1, 10)
    assert tiering.add_months(D(2026, 1, 10), -1) == D(2025, 12, 10)


@pytest.mark.parametrize(("rules", "problem"), [
    ([], "at least one tier is needed"),
    ([TierRule("a", 0, "spend", 0), TierRule("a", 1, "spend", 5)], "tier ids must be unique"),
    ([TierRule("a", 0, "spend", 0), TierRule("b", 0, "spend", 5)], "ranks must be unique"),
    ([TierRule("a", 0, "spend", 1)], "the lowest tier (a) must have threshold 0"),
])
def test_bad_tier_definitions_are_named(rules: list[TierRule], problem: str) -> None:
    assert tiering.check_rules(rules) == problem


# -- automatic tags -----------------------------------------------------------------------------------------

def _history(joined: D, birthday: D | None, *spend: Spend) -> History:
    return History(joined_on=joined, birthday=birthday, tickets=sorted({s.day for s in spend}), spend=list(spend))


def test_high_value_counts_only_the_window() -> None:
    rule = [HighValue(name="high_value", min_spend=100_000, window_days=30)]
    inside = Spend(D(2026, 5, 17), "fruit", 60_000)  # 29 days ago
    edge = Spend(D(2026, 5, 16), "fruit", 40_000)  # 30 days ago: outside a 30-day window
    assert tagging.auto_tags(rule, _history(D(2025, 1, 1), None, inside, edge), TODAY) == []
    assert tagging.auto_tags(rule, _history(D(2025, 1, 1), None, inside, Spend(TODAY, "dairy", 40_000)),
                             TODAY) == ["high_value"]


def test_price_sensitive_share_of_discounted_spend() -> None:
    rule = [PriceSensitive(name="price_sensitive", min_share_bp=5_000, min_tickets=2)]
    half = _history(D(2025, 1, 1), None, Spend(D(2026, 6, 1), "fruit", 1_000, 500),
                    Spend(D(2026, 6, 2), "dairy", 1_000, 500))
    assert tagging.auto_tags(rule, half, TODAY) == ["price_sensitive"]
    under = _history(D(2025, 1, 1), None, Spend(D(2026, 6, 1), "fruit", 1_000, 500),
                     Spend(D(2026, 6, 2), "dairy", 1_001, 500))
    assert tagging.auto_tags(rule, under, TODAY) == []
    one_ticket = _history(D(2025, 1, 1), None, Spend(D(2026, 6, 1), "fruit", 1_000, 1_000))
    assert tagging.auto_tags(rule, one_ticket, TODAY) == []


def test_category_preference_names_the_top_category() -> None:
    rule = [CategoryPreference(name="prefers", min_share_bp=6_000, min_tickets=2)]
    fruit = _history(D(2025, 1, 1), None, Spend(D(2026, 6, 1), "fruit", 600), Spend(D(2026, 6, 2), "dairy", 400))
    assert tagging.auto_tags(rule, fruit, TODAY) == ["prefers:fruit"]
    spread = _history(D(2025, 1, 1), None, Spend(D(2026, 6, 1), "fruit", 599), Spend(D(2026, 6, 2), "dairy", 401))
    assert tagging.auto_tags(rule, spread, TODAY) == []


def test_dormant_exactly_n_days() -> None:
    rule = [Dormant(name="dormant", days=90)]
    assert tagging.auto_tags(rule, _history(D(2025, 1, 1), None, Spend(D(2026, 3, 17), "fruit", 100)),
                             TODAY) == ["dormant"]  # 90 days ago
    assert tagging.auto_tags(rule, _history(D(2025, 1, 1), None, Spend(D(2026, 3, 18), "fruit", 100)),
                             TODAY) == []  # 89 days ago
    # no purchase at all: counted from joining
    assert tagging.auto_tags(rule, History(joined_on=D(2026, 3, 17)), TODAY) == ["dormant"]
    assert tagging.auto_tags(rule, History(joined_on=D(2026, 3, 18)), TODAY) == []


@pytest.mark.parametrize(("today", "birthday", "tagged"), [
    (D(2026, 12, 1), D(1990, 12, 31), True),
    (D(2026, 12, 31), D(1990, 12, 1), True),
    (D(2026, 12, 31), D(1990, 1, 1), False),  # Dec/Jan: next month's birthday is not this month's
    (D(2027, 1, 1), D(1990, 12, 31), False),
    (D(2027, 1, 1), D(1990, 1, 31), True),
    (D(2026, 11, 30), D(1990, 12, 1), False),
    (D(2028, 2, 29), D(2000, 2, 29), True),
])
def test_birthday_this_month(today: D, birthday: D, tagged: bool) -> None:
    history = History(joined_on=D(2020, 1, 1), birthday=birthday)
    assert tagging.auto_tags([BirthdayMonth(name="birthday_month")], history, today) == (
        ["birthday_month"] if tagged else [])


def test_no_birthday_no_birthday_tag() -> None:
    assert tagging.auto_tags([BirthdayMonth(name="birthday_month")], History(joined_on=TODAY), TODAY) == []


def test_new_member_within_n_days() -> None:
    rule = [NewMember(name="new_member", days=30)]
    assert tagging.auto_tags(rule, History(joined_on=TODAY), TODAY) == ["new_member"]
    assert tagging.auto_tags(rule, History(joined_on=D(2026, 5, 17)), TODAY) == ["new_member"]  # day 29
    assert tagging.auto_tags(rule, History(joined_on=D(2026, 5, 16)), TODAY) == []  # day 30


def test_all_rules_together_sorted() -> None:
    history = _history(D(2026, 6, 1), D(1990, 6, 30), Spend(D(2026, 6, 2), "fruit", 600_000, 400_000),
                       Spend(D(2026, 6, 3), "dairy", 100_000), Spend(D(2026, 6, 4), "fruit", 10_000))
    assert tagging.auto_tags(tagging.DEFAULT_RULES, history, TODAY) == [
        "birthday_month", "high_value", "new_member", "prefers:fruit", "price_sensitive"]


def test_tag_rule_names_must_be_unique() -> None:
    assert tagging.check_rules([Dormant(name="x", days=1), NewMember(name="x", days=1)]) == "tag names must be unique"
    assert tagging.check_rules(tagging.DEFAULT_RULES) is None


def test_dormant_looks_at_the_last_purchase_beyond_the_window() -> None:
    rule = [Dormant(name="dormant", days=400)]
    old = History(joined_on=D(2020, 1, 1), last_purchase_on=D(2025, 6, 1))  # 379 days ago
    assert tagging.auto_tags(rule, old, TODAY) == []
    assert tagging.auto_tags(rule, History(joined_on=D(2020, 1, 1), last_purchase_on=D(2025, 5, 11)),
                             TODAY) == ["dormant"]  # 400 days ago


def test_tier_settings_refuse_a_removed_tier() -> None:
    settings = tiering.TierSettings(tiers=[tiering.TierDef("regular", "普通", "Regular")])
    assert tiering.check_settings(settings, ["regular", "gold"]) == "tiers cannot be removed: gold missing"
    assert tiering.check_settings(settings, ["regular"]) is None


# -- invariants ------------------------------------------------------------------------------------------------

_figures = st.builds(Figures, spend=st.integers(0, 10**7), points=st.integers(0, 10**5), visits=st.integers(0, 500))
_day = st.dates(D(2020, 1, 1), D(2030, 12, 31))


@given(figures=_figures, current=st.sampled_from(["regular", "silver", "gold"]), review=st.none() | _day, today=_day)
@settings(max_examples=300, deadline=None)
def test_a_tier_never_drops_before_the_review_date_and_never_stays_below_what_qualifies(
        figures: Figures, current: str, review: D | None, today: D) -> None:
    rank = {r.tier: r.rank for r in SPEND_RULES}
    d = tiering.evaluate(SPEND_RULES, figures, current, review, today)
    qualified = tiering.qualifying(SPEND_RULES, figures).tier
    assert rank[d.tier] >= rank[qualified]  # an upgrade is never held back
    if review is None or today < review:
        assert rank[d.tier] >= rank[current]  # no downgrade before the review date
    else:
        assert d.tier == qualified  # on or after it: exactly what the figures reach
    assert d.review_on > today  # the next review is always ahead
