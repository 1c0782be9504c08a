"""Basket pricing: gross per line, rule benefits allocated to lines, tax per line, points.

Pure functions over Structs: no I/O, no clock. The quote endpoint and the sale commit call the
same `price_basket`, so what a till was quoted is what it is charged. Rules are applied in
priority order (ties broken by rule id); each records its amount per line with a zh-CN and an
English name, which the quote and receipt show. The foundation ships the member-tier discount;
the promotion engine adds rule kinds behind the same `Rule` interface.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from edge.money import percent_of, tax_included


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


class Applied(msgspec.Struct, frozen=True):
    rule_id: str
    name: str
    name_en: str
    amount: int


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


class Context(msgspec.Struct, frozen=True):
    member_id: str | None = None
    tier: Tier | None = None


class Rule(Protocol):
    @property
    def rule_id(self) -> str: ...

    @property
    def priority(self) -> int: ...

    def apply(self, lines: list[BasketLine], nets: list[int], ctx: Context) -> list[int]:
        """Discount per line (same order as `lines`), given each line's current net."""
        ...


class TierDiscount(msgspec.Struct, frozen=True):
    """A member tier's percentage off every line (金卡九折)."""

    rule_id: str
    name_zh: str
    name_en: str
    tier: str
    discount_bp: int
    priority: int = 100

    def apply(self, lines: list[BasketLine], nets: list[int], ctx: Context) -> list[int]:
        if ctx.tier is None or ctx.tier.tier != self.tier or self.discount_bp <= 0:
            return [0] * len(lines)
        return [min(net, percent_of(net, self.discount_bp)) for net in nets]


def tier_rules(tier: Tier | None) -> list[Rule]:
    if tier is None or tier.discount_bp <= 0:
        return []
    pct = tier.discount_bp / 100
    off = f"{10 - tier.discount_bp / 1000:g}折"
    return [
        TierDiscount(
            rule_id=f"tier:{tier.tier}",
            name_zh=f"{tier.name_zh}{off}",
            name_en=f"{tier.name_en} {pct:g}% off",
            tier=tier.tier,
            discount_bp=tier.discount_bp,
        )
    ]


def points_for(amount: int, multiplier_pct: int) -> int:
    """Points earned: one per full yuan, times the tier multiplier (percent), rounded down."""
    if amount <= 0:
        return 0
    return amount * multiplier_pct // 10_000


def price_basket(lines: list[BasketLine], ctx: Context, rules: list[Rule]) -> Quote:
    nets = [line.gross for line in lines]
    applied: list[list[Applied]] = [[] for _ in lines]
    for rule in sorted(rules, key=lambda r: (-r.priority, r.rule_id)):
        amounts = rule.apply(lines, nets, ctx)
        for i, amount in enumerate(amounts):
            if amount:
                amount = min(amount, nets[i])  # a rule never pushes a line below zero
                nets[i] -= amount
                name_zh = getattr(rule, "name_zh", rule.rule_id)
                name_en = getattr(rule, "name_en", rule.rule_id)
                applied[i].append(Applied(rule.rule_id, name_zh, name_en, amount))
    priced = []
    for line, net, line_applied in zip(lines, nets, applied, strict=True):
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
    multiplier = ctx.tier.points_multiplier_pct if ctx.tier else 100
    return Quote(
        lines=priced,
        subtotal=subtotal,
        discount=subtotal - total,
        total=total,
        tax=sum(p.tax for p in priced),
        points_earned=points_for(total, multiplier) if ctx.member_id else 0,
        member_id=ctx.member_id,
        tier=ctx.tier.tier if ctx.tier else None,
    )
