"""Invariants of the promotion engine over random baskets and random rule sets (hypothesis).

- no line's net goes below zero (nor above its gross);
- each line's rule amounts sum to its discount, each rule's line amounts sum to the amount the rule
  reports, and the line discounts sum to the basket's discount;
- the result does not depend on the order the lines arrive in, and quoting twice gives the same;
- returning every unit of a sale, in any number of partial returns, refunds exactly what was paid,
  with the default policy and with the 满减 clawback option.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.money import div_half_up, share_of_units
from edge.pricing.engine import BasketLine, Context, PricingItem, Quote, Tier, price_basket, tier_rules
from edge.promotions import clawback
from edge.promotions.engine import RuleBook
from edge.promotions.outcome import CouponGrant, RuleUsage
from edge.promotions.rules import (
    AmountOff,
    BuyNGetM,
    Condition,
    Eligibility,
    FixedPrice,
    FreeGift,
    ItemRange,
    Limits,
    PercentOff,
    PointsMultiplier,
    Promotion,
    SpendGetOff,
)

PARENTS: dict[str, str | None] = {"snacks": None, "drinks": "snacks", "dairy": None, "milk": "dairy",
                                  "fresh": None, "fruit": "fresh", "misc": None}
CATALOG = [
    PricingItem("COLA", "可乐", "Cola", "drinks", "each", 300, 1300, "可口可乐"),
    PricingItem("SPRITE", "雪碧", "Sprite", "drinks", "each", 350, 1300, "雪碧"),
    PricingItem("MILK", "牛奶", "Milk", "milk", "each", 990, 900, "", ("chilled",), 890),
    PricingItem("RICE", "大米", "Rice", "misc", "each", 5990, 900),
    PricingItem("BAG", "购物袋", "Bag", "misc", "each", 1, 1300),
    PricingItem("APPLE", "苹果", "Apples", "fruit", "kg", 1598, 900),
    PricingItem("PEAR", "梨", "Pears", "fruit", "kg", 7, 900),
]
SKUS = [i.sku for i in CATALOG]
GOLD = Tier("gold", "金卡会员", "Gold", 1000, 200)


@st.composite
def baskets(draw: st.DrawFn) -> list[BasketLine]:
    out = []
    for no in range(1, draw(st.integers(1, 8)) + 1):
        it = draw(st.sampled_from(CATALOG))
        if it.unit == "kg":
            grams = draw(st.integers(1, 3000))
            out.append(BasketLine(no, it, 1, grams, None, it.price, div_half_up(it.price * grams, 1000)))
        else:
            qty = draw(st.integers(1, 12))
            out.append(BasketLine(no, it, qty, None, None, it.price, it.price * qty))
    return out


item_ranges = st.one_of(
    st.just(ItemRange()),
    st.builds(ItemRange, skus=st.lists(st.sampled_from(SKUS), min_size=1, max_size=3, unique=True)),
    st.builds(ItemRange, categories=st.lists(st.sampled_from(list(PARENTS)), min_size=1, max_size=2, unique=True)),
    st.builds(ItemRange, tags=st.just(["chilled"]), brands=st.just(["雪碧"])),
    st.builds(ItemRange, exclude_skus=st.lists(st.sampled_from(SKUS), max_size=2, unique=True)),
)
benefits = st.one_of(
    st.builds(PercentOff, discount_bp=st.integers(1, 10_000)),
    st.builds(AmountOff, amount=st.integers(1, 50_000), per=st.sampled_from(["basket", "unit"])),
    st.builds(FixedPrice, price=st.integers(0, 2_000), qty=st.integers(1, 4)),
    st.builds(BuyNGetM, buy=st.integers(1, 4), get=st.integers(1, 3), discount_bp=st.integers(1, 10_000)),
    st.builds(SpendGetOff, threshold=st.integers(1, 30_000), off=st.integers(1, 10_000), repeat=st.booleans(),
              max_times=st.none() | st.integers(1, 5)),
    st.builds(PointsMultiplier, multiplier_pct=st.integers(100, 500)),
    st.builds(FreeGift, sku=st.sampled_from(SKUS), qty=st.integers(1, 3)),
)


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Promotion]:
    n = draw(st.integers(0, 6))
    ids = [f"r{i}" for i in range(n)]
    rules = []
    for rid in ids:
        others = [x for x in ids if x != rid]
        rules.append(Promotion(
            rule_id=rid, name=f"规则{rid}", name_en=f"rule {rid}", benefit=draw(benefits), items=draw(item_ranges),
            condition=Condition(min_qty=draw(st.integers(0, 3)), min_value=draw(st.sampled_from([0, 0, 500, 5000]))),
            eligibility=Eligibility(coupon=draw(st.booleans()) if rid == "r0" else False),
            priority=draw(st.integers(-2, 2)),
            stacking=draw(st.sampled_from(["combinable", "combinable", "exclusive", "stop"])),
            combinable_with=draw(st.lists(st.sampled_from(others), unique=True, max_size=2)) if others else [],
            limits=Limits(per_basket=draw(st.none() | st.integers(1, 3)),
                          budget=draw(st.none() | st.integers(1, 5000))),
        ))
    return rules


@st.composite
def contexts(draw: st.DrawFn) -> Context:
    member = draw(st.booleans())
    usage = {"r1": RuleUsage(uses=draw(st.integers(0, 3)), amount=draw(st.integers(0, 4000)))}
    coupons = (CouponGrant("C0", "r0", draw(st.sampled_from([0, 3000]))),) if draw(st.booleans()) else ()
    return Context(member_id="M1" if member else None, tier=GOLD if member else None, usage=usage, coupons=coupons)


def quote_of(basket: list[BasketLine], ctx: Context, rules: list[Promotion]) -> Quote:
    return price_basket(basket, ctx, RuleBook([*rules, *tier_rules(ctx.tier)], PARENTS))


@settings(max_examples=400, deadline=None)
@given(basket=baskets(), rules=rule_sets(), ctx=contexts())
def test_no_net_below_zero_and_every_amount_adds_up(basket: list[BasketLine], rules: list[Promotion],
                                                   ctx: Context) -> None:
    quote = quote_of(basket, ctx, rules)
    for line in quote.lines:
        assert 0 <= line.net <= line.gross
        assert sum(a.amount for a in line.applied) == line.discount
        assert all(a.amount >= 0 for a in line.applied)
    for use in quote.uses:
        on_lines = sum(a.amount for ln in quote.lines for a in ln.applied if a.rule_id == use.rule.rule_id)
        assert on_lines == use.amount
        if use.rule.limits.budget is not None:
            spent = ctx.usage.get(use.rule.rule_id, RuleUsage()).amount
            assert use.amount <= use.rule.limits.budget - spent
    assert sum(ln.discount for ln in quote.lines) == quote.discount == quote.subtotal - quote.total
    assert quote.total == sum(ln.net for ln in quote.lines) >= 0
    assert quote.points_earned >= 0 and (ctx.member_id is not None or quote.points_earned == 0)


@settings(max_examples=300, deadline=None)
@given(basket=baskets(), rules=rule_sets(), ctx=contexts(), seed=st.integers(0, 2**32))
def test_the_order_of_the_lines_does_not_matter(basket: list[BasketLine], rules: list[Promotion], ctx: Context,
                                                seed: int) -> None:
    shuffled = list(basket)
    random.Random(seed).shuffle(shuffled)
    assert quote_of(shuffled, ctx, rules) == quote_of(basket, ctx, rules)
    assert quote_of(basket, ctx, list(reversed(rules))) == quote_of(basket, ctx, rules)


@settings(max_examples=200, deadline=None)
@given(basket=baskets(), rules=rule_sets(), ctx=contexts())
def test_quoting_twice_gives_the_same_result(basket: list[BasketLine], rules: list[Promotion], ctx: Context) -> None:
    book = RuleBook([*rules, *tier_rules(ctx.tier)], PARENTS)
    assert price_basket(basket, ctx, book) == price_basket(basket, ctx, book)


def _units(line_qty: int, weight_g: int | None, unit: str) -> int:
    return weight_g if unit == "kg" and weight_g is not None else line_qty


@settings(max_examples=300, deadline=None)
@given(basket=baskets(), rules=rule_sets(), ctx=contexts(), use_clawback=st.booleans(), data=st.data())
def test_returning_every_unit_refunds_exactly_what_was_paid(basket: list[BasketLine], rules: list[Promotion],
                                                             ctx: Context, use_clawback: bool,
                                                             data: st.DataObject) -> None:
    quote = quote_of(basket, ctx, rules)
    sold = {ln.line_no: clawback.SoldLine(_units(ln.qty, ln.weight_g, ln.unit),
                                          {a.rule_id: a.amount for a in ln.applied}) for ln in quote.lines}
    net = {ln.line_no: ln.net for ln in quote.lines}
    uses = [clawback.ThresholdUse(u.rule.benefit, u.rule.limits.per_basket, u.rule.rule_id, dict(u.bases))
            for u in quote.uses if isinstance(u.rule.benefit, SpendGetOff)]
    returned = dict.fromkeys(sold, 0)
    refunded = taken = 0
    while any(returned[n] < sold[n].units for n in sold):
        this: dict[int, int] = {}
        for n in sorted(sold):
            left = sold[n].units - returned[n]
            if left and data.draw(st.booleans()):
                this[n] = data.draw(st.integers(1, left))
        if not this:  # always make progress
            n = min(k for k in sold if returned[k] < sold[k].units)
            this[n] = sold[n].units - returned[n]
        refund = sum(share_of_units(net[n], sold[n].units, returned[n], k) for n, k in this.items())
        for n, k in this.items():
            returned[n] += k
        if use_clawback:
            kept = {n: sold[n].units - returned[n] for n in sold}
            claw = clawback.step(uses, sold, kept, taken, refund)
            taken += claw
            refund -= claw
        assert refund >= 0
        refunded += refund
    assert refunded == quote.total
    assert taken == 0
