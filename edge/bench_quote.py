"""`backroom bench quote`: the pricing engine on a 30-line basket against 200 active rules.

Pure engine timing, as the hub runs it on the quote and sale paths once the rule book is cached:
`price_basket(lines, ctx, book)` for a gold member (the tier's discount is one more rule), over
items and categories of the demo catalog (read from edge/seed/demo/*.csv, no database). The 200
rules mix every benefit kind — 特价 fixed prices, percent and amount off, bundles, buy N get M, 满减
once and repeating, points multipliers, gifts — with tier, time-window, coupon, exclusive and stop
rules among them, all active at the bench's clock. Deterministic (fixed seed). Each quote is timed
by the wall clock and by this thread's CPU time: on a shared box the wall-clock tail mostly measures
other processes. Prints a summary, then the figures as one JSON object on the last line (`--json`:
only that line).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import random
import sys
import time
from pathlib import Path

import msgspec

from edge.money import div_half_up
from edge.pricing.engine import BasketLine, Context, PricingItem, Tier, price_basket, tier_rules
from edge.promotions.engine import RuleBook
from edge.promotions.rules import (
    AmountOff,
    Benefit,
    BuyNGetM,
    Condition,
    Eligibility,
    FixedPrice,
    FreeGift,
    HourWindow,
    ItemRange,
    Limits,
    PercentOff,
    PointsMultiplier,
    Promotion,
    SpendGetOff,
)

SEED = 20250602
DEMO_DIR = Path(__file__).with_name("seed") / "demo"
CLOCK = datetime.datetime(2025, 6, 2, 18, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))  # a Monday
GOLD = Tier("gold", "金卡会员", "Gold", 1000, 200)
RULES = 200
LINES = 30


def demo_catalog() -> tuple[list[PricingItem], dict[str, str | None]]:
    with (DEMO_DIR / "items.csv").open(encoding="utf-8", newline="") as fh:
        items = [PricingItem(r["sku"], r["name_zh"], r["name_en"], r["category_id"], r["unit"], int(r["price"]),
                             int(r["tax_rate_bp"]), r["brand"], tuple(t for t in r["tags"].split("|") if t))
                 for r in csv.DictReader(fh)]
    with (DEMO_DIR / "categories.csv").open(encoding="utf-8", newline="") as fh:
        parents = {r["category_id"]: (r["parent_id"] or None) for r in csv.DictReader(fh)}
    return items, parents


def bench_rules(rng: random.Random, items: list[PricingItem], parents: dict[str, str | None]) -> list[Promotion]:
    """200 rules over the demo catalog, each kind in a realistic share."""
    counted = [i for i in items if i.unit == "each"]
    leaves = sorted({i.category for i in items})
    tops = sorted(c for c, p in parents.items() if p is None)
    brands = sorted({i.brand for i in items if i.brand})
    rules: list[Promotion] = []

    def add(benefit: Benefit, items_: ItemRange, **kw: object) -> None:
        n = len(rules)
        rules.append(msgspec.convert({
            "rule_id": f"bench-{n:03d}", "name": f"促销{n:03d}", "name_en": f"Promotion {n:03d}",
            "benefit": msgspec.to_builtins(benefit), "items": msgspec.to_builtins(items_),
            **{k: msgspec.to_builtins(v) for k, v in kw.items()}}, Promotion))

    for _ in range(60):  # 特价: one sku at a lower price
        it = rng.choice(counted)
        add(FixedPrice(price=it.price * rng.randint(70, 95) // 100), ItemRange(skus=[it.sku]),
            priority=rng.choice([200, 150]))
    for _ in range(23):  # category or brand percent off, some with a count condition
        scope = ItemRange(categories=[rng.choice(leaves)]) if rng.random() < 0.6 else \
            ItemRange(brands=[rng.choice(brands)])
        add(PercentOff(discount_bp=rng.choice([500, 1000, 1500, 2000])), scope,
            condition=Condition(min_qty=rng.choice([0, 0, 2, 3])))
    for _ in range(25):  # buy N get M on a sku or a brand
        it = rng.choice(counted)
        add(BuyNGetM(buy=rng.choice([1, 2, 3]), get=1, discount_bp=rng.choice([10_000, 5_000])),
            ItemRange(skus=[it.sku]) if rng.random() < 0.7 else ItemRange(brands=[rng.choice(brands)]),
            priority=120, limits=Limits(per_basket=rng.choice([1, 2, 5])))
    for _ in range(10):  # bundles: 2 or 3 for a price
        it = rng.choice(counted)
        q = rng.choice([2, 3])
        add(FixedPrice(price=it.price * q * 85 // 100, qty=q), ItemRange(skus=[it.sku]), priority=110)
    for _ in range(30):  # 满减, once or repeating, on a top category
        repeat = rng.random() < 0.4
        add(SpendGetOff(threshold=rng.choice([5000, 10000, 20000]), off=rng.choice([500, 1000, 3000]), repeat=repeat,
                        max_times=5 if repeat else None), ItemRange(categories=[rng.choice(tops)]))
    for _ in range(15):  # amount off each unit
        it = rng.choice(counted)
        add(AmountOff(amount=max(1, it.price // 10), per="unit"), ItemRange(skus=[it.sku]))
    for _ in range(15):  # points multipliers for a tier on a category
        add(PointsMultiplier(multiplier_pct=rng.choice([150, 200, 300])), ItemRange(categories=[rng.choice(tops)]),
            eligibility=Eligibility(tiers=[rng.choice(["gold", "silver"])]))
    for _ in range(8):  # gifts over a spend
        add(FreeGift(sku=rng.choice(counted).sku), ItemRange(categories=[rng.choice(tops)]),
            condition=Condition(min_value=rng.choice([5000, 10000])))
    for _ in range(6):  # happy hours and weekday deals
        add(PercentOff(discount_bp=1000), ItemRange(categories=[rng.choice(leaves)]),
            eligibility=Eligibility(hours=[HourWindow(start="17:00", end="21:00")], weekdays=[1, 2, 3, 4, 5]))
    for _ in range(6):  # coupon-only rules: no coupon is presented, so they only cost a look
        add(AmountOff(amount=1000), ItemRange(), eligibility=Eligibility(coupon=True))
    add(PercentOff(discount_bp=3000), ItemRange(skus=[rng.choice(counted).sku]), stacking="exclusive", priority=300)
    add(FixedPrice(price=100), ItemRange(skus=[rng.choice(counted).sku]), stacking="stop", priority=-10)
    assert len(rules) == RULES, len(rules)
    return rules


def bench_basket(rng: random.Random, items: list[PricingItem], rules: list[Promotion]) -> list[BasketLine]:
    """30 lines: mostly items some rule names, a few weighed, quantities 1-4."""
    by_sku = {i.sku: i for i in items}
    promoted = [by_sku[s] for r in rules for s in r.items.skus if s in by_sku]
    out = []
    for no in range(1, LINES + 1):
        it = rng.choice(promoted) if rng.random() < 0.6 else rng.choice(items)
        if it.unit == "kg":
            grams = rng.randint(200, 2500)
            out.append(BasketLine(no, it, 1, grams, None, it.price, div_half_up(it.price * grams, 1000)))
        else:
            qty = rng.randint(1, 4)
            out.append(BasketLine(no, it, qty, None, None, it.price, it.price * qty))
    return out


def _pct(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))]


def run_quote_bench(args: argparse.Namespace) -> int:
    seconds = float(getattr(args, "seconds", 10.0))
    if seconds <= 0:
        print("--seconds must be positive", file=sys.stderr)
        return 2
    rng = random.Random(SEED)
    items, parents = demo_catalog()
    rules = bench_rules(rng, items, parents)
    t0 = time.perf_counter()
    book = RuleBook([*rules, *tier_rules(GOLD)], parents, version="bench")
    compile_ms = (time.perf_counter() - t0) * 1000
    basket = bench_basket(rng, items, rules)
    ctx = Context(member_id="M000001", tier=GOLD, store_id="demo-001", at=CLOCK)
    quote = price_basket(basket, ctx, book)
    for _ in range(200):  # warm up
        price_basket(basket, ctx, book)
    times: list[float] = []
    cpu: list[float] = []  # this thread's CPU time: what the engine costs, without the box's other load
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 100:
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        price_basket(basket, ctx, book)
        cpu.append((time.thread_time_ns() - start_cpu) / 1e6)
        times.append((time.perf_counter_ns() - start) / 1e6)
    times.sort()
    cpu.sort()
    figures = {
        "kind": "quote", "rules": len(book), "active_rules": RULES, "lines": len(basket), "quotes": len(times),
        "p50_ms": round(_pct(times, 0.50), 3), "p99_ms": round(_pct(times, 0.99), 3),
        "max_ms": round(times[-1], 3), "mean_ms": round(sum(times) / len(times), 3),
        "cpu_p50_ms": round(_pct(cpu, 0.50), 3), "cpu_p99_ms": round(_pct(cpu, 0.99), 3),
        "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "rules_applied": len(quote.uses), "hints": len(quote.hints), "subtotal": quote.subtotal,
        "discount": quote.discount, "total": quote.total, "compile_ms": round(compile_ms, 2),
        "python": platform.python_version(), "machine": platform.machine(),
    }
    if not getattr(args, "json", False):
        print(f"quote bench: {len(basket)}-line basket, {RULES} active rules (+ tier), pure engine, "
              f"{len(times)} quotes in {seconds:g} s")
        print(f"  wall: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms; "
              f"CPU: p50 {figures['cpu_p50_ms']} ms, p99 {figures['cpu_p99_ms']} ms "
              f"(load average {figures['load_avg_1m']} on {figures['cpus']} CPUs)")
        print(f"  {len(quote.uses)} rules applied, subtotal {quote.subtotal} discount {quote.discount} fen; "
              f"rule book compiled in {figures['compile_ms']} ms")
    print(msgspec.json.encode(figures).decode(), flush=True)
    return 0
