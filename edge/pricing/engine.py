"""Basket pricing: gross per line, rule benefits allocated to lines, tax per line, points.

Pure functions over Structs: no I/O, no clock. The quote endpoint and the sale commit call the
same `price_basket`, so what a till was quoted is what it is charged. The rules — the member tier's
discount and every promotion — go through one engine (edge.promotions.engine) in priority order,
ties broken by rule id; each records its amount per line with a zh-CN and an English name, which
the quote and receipt show. Lines come out in line-number order whatever order they came in.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge.money import tax_included
from edge.pricing.lines import Applied, BasketLine, Context, PricedLine, PricingItem, Quote, Tier
from edge.promotions.engine import RuleBook, evaluate
from edge.promotions.rules import Eligibility, PercentOff, Promotion

__all__ = ["Applied", "BasketLine", "Context", "PricedLine", "PricingItem", "Quote", "RuleBook", "Tier",
           "points_for", "price_basket", "tier_rule", "tier_rules"]

TIER_PRIORITY = 100


def tier_rule(tier: Tier) -> Promotion:
    """A member tier's percentage off every line (金卡九折), as a rule like any other."""
    pct = tier.discount_bp / 100
    off = f"{10 - tier.discount_bp / 1000:g}折"
    return Promotion(
        rule_id=f"tier:{tier.tier}",
        name=f"{tier.name_zh}{off}",
        name_en=f"{tier.name_en} {pct:g}% off",
        benefit=PercentOff(discount_bp=tier.discount_bp),
        eligibility=Eligibility(tiers=[tier.tier]),
        priority=TIER_PRIORITY,
    )


def tier_rules(tier: Tier | None) -> list[Promotion]:
    if tier is None or tier.discount_bp <= 0:
        return []
    return [tier_rule(tier)]


def points_for(amount: int, multiplier_pct: int) -> int:
    """Points earned: one per full yuan, times the tier multiplier (percent), rounded down."""
    if amount <= 0:
        return 0
    return amount * multiplier_pct // 10_000


def points_for_quote(quote: Quote, paid_by_points: int) -> int:
    """Points a sale earns: each line's net at its own percent (tier x rule multipliers), less the
    share paid with points (points do not earn points), one point per full yuan."""
    if quote.member_id is None or quote.total <= 0 or paid_by_points >= quote.total:
        return 0
    return quote.points_weight * (quote.total - paid_by_points) // (quote.total * 10_000)


def price_basket(lines: Sequence[BasketLine], ctx: Context, rules: RuleBook | Sequence[Promotion] = ()) -> Quote:
    book = rules if isinstance(rules, RuleBook) else RuleBook(rules)
    ordered = sorted(lines, key=lambda line: line.line_no)
    ev = evaluate(ordered, ctx, book)
    priced = []
    for line, net, line_applied in zip(ordered, ev.nets, ev.applied, strict=True):
        priced.append(
            PricedLine(
                line_no=line.line_no,
                sku=line.item.sku,
                name=line.item.name_zh,
                name_en=line.item.name_en,
                barcode=line.barcode,
                unit=line.item.unit,
                qty=line.qty,
                weight_g=line.weight_g,
                unit_price=line.unit_price,
                gross=line.gross,
                discount=line.gross - net,
                net=net,
                tax=tax_included(net, line.item.tax_rate_bp),
                tax_rate_bp=line.item.tax_rate_bp,
                applied=line_applied,
                category=line.item.category,
            )
        )
    subtotal = sum(p.gross for p in priced)
    total = sum(p.net for p in priced)
    weight = sum(net * pct for net, pct in zip(ev.nets, ev.points_pct, strict=True))
    return Quote(
        lines=priced,
        subtotal=subtotal,
        discount=subtotal - total,
        total=total,
        tax=sum(p.tax for p in priced),
        points_earned=weight // 10_000 if ctx.member_id and total > 0 else 0,
        member_id=ctx.member_id,
        tier=ctx.tier.tier if ctx.tier else None,
        points_weight=weight if ctx.member_id else 0,
        uses=ev.uses,
        hints=ev.hints,
        coupon_issues=ev.coupon_issues,
    )
