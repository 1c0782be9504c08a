"""The promotion engine: pure code over a basket, the shopper's context and a compiled rule book.

Order: a member price (tier price list) first, then rules by priority, highest first, ties broken by
rule id. Each rule sees the line nets the rules before it left. Count-based benefits (fixed price,
buy N get M, free gift) consume the units they use, so no unit is counted twice by them; value-based
benefits (percent, amount, 满减) work on nets, which already carry earlier discounts. A basket-level
amount is shared out over the lines it was measured on in proportion to their nets, remainder to
the largest line (edge.money.allocate), so line amounts sum exactly to the rule's amount and no net
goes below zero. Stacking: `combinable` rules stack; an `exclusive` rule takes only lines no other
rule has touched and keeps them to itself; after a `stop` rule applies no later rule runs. Rules a
rule lists in `combinable_with` (or that list it) are exempt from both. No I/O and no clock here:
the time is `ctx.at`, usage so far is `ctx.usage`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence

from edge.money import allocate, div_half_up, percent_of
from edge.pricing.lines import Applied, BasketLine, Context
from edge.promotions import explain
from edge.promotions.outcome import CouponGrant, CouponIssue, Hint, RuleUse
from edge.promotions.rules import (
    AmountOff,
    BuyNGetM,
    FixedPrice,
    FreeGift,
    PercentOff,
    PointsMultiplier,
    Promotion,
    SpendGetOff,
)

HINT_WITHIN_BP = 5_000  # hint a value threshold when the basket is within 50 % of it
HINT_WITHIN_QTY = 2  # ... or a count threshold when 1 or 2 units short
MAX_HINTS = 5


PERCENT, AMOUNT, FIXED, BUY_GET, SPEND, POINTS, GIFT = range(7)
_KINDS: dict[type, int] = {PercentOff: PERCENT, AmountOff: AMOUNT, FixedPrice: FIXED, BuyNGetM: BUY_GET,
                           SpendGetOff: SPEND, PointsMultiplier: POINTS, FreeGift: GIFT}


def _minutes(clock: str) -> int:
    return int(clock[:2]) * 60 + int(clock[3:])


class CompiledRule:
    """A rule with its lookups prepared once per rule book, not per quote."""

    __slots__ = ("rule", "rule_id", "benefit", "kind", "everything", "keys", "exclude_skus", "exclude_cats",
                 "excludes", "allow", "exclusive", "stop", "members_only", "tiers", "tags", "stores", "starts", "ends",
                 "weekdays", "hours", "timed", "coupon", "min_qty", "min_value", "limits", "limited", "anyone", "note",
                 "note_en")

    def __init__(self, rule: Promotion, descendants: Mapping[str, frozenset[str]]) -> None:
        rng, elig = rule.items, rule.eligibility
        self.rule = rule
        self.rule_id = rule.rule_id
        self.benefit = rule.benefit
        self.kind = _KINDS[type(rule.benefit)]
        self.everything = rng.everything
        cats: set[str] = set()
        for cat in rng.categories:
            cats |= descendants.get(cat, frozenset((cat,)))
        self.keys = frozenset([*(f"s:{s}" for s in rng.skus), *(f"c:{c}" for c in cats),
                               *(f"b:{b}" for b in rng.brands), *(f"t:{t}" for t in rng.tags)])
        self.exclude_skus = frozenset(rng.exclude_skus)
        ex_cats: set[str] = set()
        for cat in rng.exclude_categories:
            ex_cats |= descendants.get(cat, frozenset((cat,)))
        self.exclude_cats = frozenset(ex_cats)
        self.excludes = bool(self.exclude_skus or self.exclude_cats)
        self.allow = frozenset(rule.combinable_with)
        self.exclusive = rule.stacking == "exclusive"
        self.stop = rule.stacking == "stop"
        self.members_only = elig.members_only or bool(elig.tiers) or bool(elig.member_tags) \
            or rule.limits.per_member is not None
        self.tiers = frozenset(elig.tiers)
        self.tags = frozenset(elig.member_tags)
        self.stores = frozenset(elig.stores)
        self.starts = elig.starts_at
        self.ends = elig.ends_at
        self.weekdays = frozenset(elig.weekdays)
        self.hours = tuple((_minutes(w.start), _minutes(w.end)) for w in elig.hours)
        self.timed = bool(self.starts or self.ends or self.weekdays or self.hours)
        self.coupon = elig.coupon
        self.min_qty = rule.condition.min_qty
        self.min_value = rule.condition.min_value
        self.limits = rule.limits
        self.limited = rule.limits.any
        self.anyone = not (self.members_only or self.stores or self.timed)  # no need to ask eligible()
        # A tier's discount says it all in its name ("金卡会员9折"); promotions also say what they gave.
        self.note, self.note_en = ("", "") if rule.rule_id.startswith("tier:") else explain.describe(rule.benefit)

    def allows(self, other: CompiledRule) -> bool:
        """May `other` stack where this rule holds a line (or stopped the basket)?"""
        return other.rule_id in self.allow or self.rule_id in other.allow

    def eligible(self, ctx: Context) -> bool:
        if self.members_only and ctx.member_id is None:
            return False
        if self.tiers and (ctx.tier is None or ctx.tier.tier not in self.tiers):
            return False
        if self.tags and not self.tags.intersection(ctx.member_tags):
            return False
        if self.stores and ctx.store_id not in self.stores:
            return False
        if self.timed:
            at = ctx.at
            if at is None:  # no clock given: a time-limited rule cannot be shown to be on
                return False
            if (self.starts is not None and at < self.starts) or (self.ends is not None and at >= self.ends):
                return False
            if self.weekdays and at.isoweekday() not in self.weekdays:
                return False
            if self.hours:
                minute = at.hour * 60 + at.minute
                if not any(start <= minute < end for start, end in self.hours):
                    return False
        return True


def _descendants(parents: Mapping[str, str | None]) -> dict[str, frozenset[str]]:
    children: dict[str, list[str]] = {}
    for cat, parent in parents.items():
        if parent:
            children.setdefault(parent, []).append(cat)
    out: dict[str, frozenset[str]] = {}
    for cat in set(parents) | set(children):
        seen, todo = {cat}, [cat]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        out[cat] = frozenset(seen)
    return out


class RuleBook:
    """Rules compiled and indexed once: by sku, category (with sub-categories), brand and tag, so a
    quote touches only the rules its lines can match. Immutable after construction."""

    def __init__(self, rules: Iterable[Promotion], category_parents: Mapping[str, str | None] | None = None,
                 version: str = "") -> None:
        descendants = _descendants(category_parents or {})
        ordered = sorted(rules, key=lambda r: (-r.priority, r.rule_id))
        ids = [r.rule_id for r in ordered]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique in a rule book")
        self.version = version
        self.rules = [CompiledRule(r, descendants) for r in ordered]
        self.by_id = {c.rule_id: c for c in self.rules}
        self.index: dict[str, list[int]] = {}
        self.everywhere: frozenset[int] = frozenset(i for i, c in enumerate(self.rules) if c.everything)
        for pos, compiled in enumerate(self.rules):
            for key in compiled.keys:
                self.index.setdefault(key, []).append(pos)

    def __len__(self) -> int:
        return len(self.rules)


class Evaluation:
    """The engine's answer: per line (in the order given) its net, rule amounts and points percent."""

    __slots__ = ("nets", "applied", "points_pct", "uses", "hints", "coupon_issues")

    def __init__(self, nets: list[int], applied: list[list[Applied]], points_pct: list[int], uses: list[RuleUse],
                 hints: list[Hint], coupon_issues: list[CouponIssue]) -> None:
        self.nets = nets
        self.applied = applied
        self.points_pct = points_pct
        self.uses = uses
        self.hints = hints
        self.coupon_issues = coupon_issues


def _line_keys(line: BasketLine) -> list[str]:
    item = line.item
    keys = [f"s:{item.sku}", f"c:{item.category}"]
    if item.brand:
        keys.append(f"b:{item.brand}")
    keys.extend(f"t:{tag}" for tag in item.tags)
    return keys


class _Basket:
    """Mutable state of one evaluation: nets, units not yet consumed, which rules touched a line."""

    __slots__ = ("lines", "nets", "units", "free", "counted", "applied", "touched", "lock", "points_pct")

    def __init__(self, lines: Sequence[BasketLine], base_points_pct: int) -> None:
        self.lines = lines
        self.nets = [line.gross for line in lines]
        self.counted = [line.item.unit != "kg" for line in lines]
        self.units = [line.qty if counted else 1 for line, counted in zip(lines, self.counted, strict=True)]
        self.free = list(self.units)
        self.applied: list[list[Applied]] = [[] for _ in lines]
        self.touched: list[list[CompiledRule]] = [[] for _ in lines]
        self.lock: list[CompiledRule | None] = [None] * len(lines)
        self.points_pct = [base_points_pct] * len(lines)

    def value(self, i: int, start: int, count: int) -> int:
        """Worth of units start..start+count of line i (cumulative rounding: all units sum to the net)."""
        net, units = self.nets[i], self.units[i]
        if count == units and start == 0:
            return net
        return net * (start + count) // units - net * start // units

    def may_take(self, i: int, r: CompiledRule) -> bool:
        """Stacking: a line held by an exclusive rule, or touched before an exclusive one, is off limits."""
        held = self.lock[i]
        if held is not None and not held.allows(r):
            return False
        return not (r.exclusive and any(not t.allows(r) for t in self.touched[i]))

    def taken(self, i: int) -> int:
        return self.units[i] - self.free[i]

    def unit_order(self, idx: list[int]) -> list[int]:
        """Lines by worth per unit, highest first, ties by line number: groups take dear units first."""
        return sorted(idx, key=lambda i: (-self.nets[i] * 1.0 / self.units[i], self.lines[i].line_no))


def _percent_off(b: _Basket, idx: list[int], bp: int, limit: int | None) -> tuple[list[int], int]:
    if limit is None:
        return [percent_of(b.nets[i], bp) for i in idx], 1
    amounts = dict.fromkeys(idx, 0)
    left = limit
    for i in b.unit_order(idx):
        if left <= 0:
            break
        k = min(b.units[i], left)
        amounts[i] = percent_of(b.value(i, 0, k), bp)
        left -= k
    return [amounts[i] for i in idx], 1


def _amount_off(b: _Basket, idx: list[int], benefit: AmountOff, limit: int | None) -> tuple[list[int], int]:
    if benefit.per == "basket":
        total = min(benefit.amount, sum(b.nets[i] for i in idx))
        return allocate(total, [b.nets[i] for i in idx]), 1
    amounts = dict.fromkeys(idx, 0)
    left = limit if limit is not None else 1 << 62
    times = 0
    for i in b.unit_order(idx) if limit is not None else idx:
        k = min(b.units[i], left)
        if k <= 0:
            break
        amounts[i] = min(b.nets[i], benefit.amount * k)
        left -= k
        times += k
    return [amounts[i] for i in idx], times


def _fixed_price(b: _Basket, idx: list[int], benefit: FixedPrice, limit: int | None,
                 consumed: dict[int, int]) -> tuple[list[int], int]:
    amounts = dict.fromkeys(idx, 0)
    left = limit if limit is not None else 1 << 62
    times = 0
    if benefit.qty == 1:
        for i in b.unit_order(idx):
            k = min(b.free[i], left)
            if k <= 0:
                continue
            if b.counted[i]:
                worth = b.value(i, b.taken(i), k)
                target = benefit.price * k
            else:
                weight = b.lines[i].weight_g or 0
                worth, target = b.nets[i], div_half_up(benefit.price * weight, 1000)
            if worth > target:
                amounts[i] = worth - target
                consumed[i] = k
                left -= k
                times += k
        return [amounts[i] for i in idx], times
    # Bundles: fill groups of `qty` units from the dearest units down while a group is worth more.
    pool = [i for i in b.unit_order(idx) if b.counted[i] and b.free[i] > 0]
    cursor = {i: b.taken(i) for i in pool}
    available = sum(b.free[i] for i in pool)
    groups = min(available // benefit.qty, left)
    pos = 0
    while groups > 0 and pos < len(pool):
        i = pool[pos]
        remaining = b.units[i] - cursor[i]
        if remaining >= benefit.qty:  # whole groups inside one line
            m = min(remaining // benefit.qty, groups)
            worth = b.value(i, cursor[i], m * benefit.qty)
            if worth <= benefit.price * m:
                break
            amounts[i] += worth - benefit.price * m
            cursor[i] += m * benefit.qty
            consumed[i] = consumed.get(i, 0) + m * benefit.qty
            groups -= m
            times += m
            if b.units[i] == cursor[i]:
                pos += 1
            continue
        parts: list[tuple[int, int]] = []  # (line, units) of a group that spans lines
        need, p = benefit.qty, pos
        while need and p < len(pool):
            j = pool[p]
            take = min(need, b.units[j] - cursor[j])
            if take:
                parts.append((j, take))
                need -= take
            if take == 0 or b.units[j] - cursor[j] - take == 0:
                p += 1
        if need:
            break
        worths = [b.value(j, cursor[j], take) for j, take in parts]
        if sum(worths) <= benefit.price:
            break
        for (j, take), share in zip(parts, allocate(sum(worths) - benefit.price, worths), strict=True):
            amounts[j] += share
            cursor[j] += take
            consumed[j] = consumed.get(j, 0) + take
        groups -= 1
        times += 1
        while pos < len(pool) and b.units[pool[pos]] == cursor[pool[pos]]:
            pos += 1
    return [amounts[i] for i in idx], times


def _buy_n_get_m(b: _Basket, idx: list[int], benefit: BuyNGetM, limit: int | None,
                 consumed: dict[int, int]) -> tuple[list[int], int]:
    size = benefit.buy + benefit.get
    wanted = limit * size if limit is not None else 1 << 62
    units: list[tuple[int, int]] = []  # (line, worth) per unit, dearest first
    for i in b.unit_order(idx):
        if not b.counted[i]:
            continue
        start = b.taken(i)
        units.extend((i, b.value(i, start + k, 1)) for k in range(min(b.free[i], wanted - len(units))))
        if len(units) >= wanted:
            break
    groups = len(units) // size
    if limit is not None:
        groups = min(groups, limit)
    amounts = dict.fromkeys(idx, 0)
    for g in range(groups):
        group = units[g * size:(g + 1) * size]
        off = percent_of(sum(w for _, w in group[benefit.buy:]), benefit.discount_bp)
        if off <= 0:
            continue
        # Shared over the whole group, so returning the paid units does not keep the free one free.
        worth: dict[int, int] = {}
        for i, w in group:
            worth[i] = worth.get(i, 0) + w
            consumed[i] = consumed.get(i, 0) + 1
        for i, share in zip(worth, allocate(off, list(worth.values())), strict=True):
            amounts[i] += share
    return [amounts[i] for i in idx], groups


def _cheapest_unit(b: _Basket, idx: list[int]) -> int:
    return min((b.value(i, b.taken(i), 1) for i in idx if b.counted[i] and b.free[i] > 0), default=0)


def evaluate(lines: Sequence[BasketLine], ctx: Context, book: RuleBook) -> Evaluation:
    """Apply the rule book to the lines. Deterministic given the lines' line numbers, whatever their order."""
    base_pct = ctx.tier.points_multiplier_pct if ctx.tier is not None else 100
    b = _Basket(lines, base_pct)
    n = len(lines)
    if ctx.member_id is not None:
        for i, line in enumerate(lines):
            mp, price = line.item.member_price, line.item.price
            if mp is not None and price > 0 and mp < price:
                off = b.nets[i] - div_half_up(b.nets[i] * mp, price)
                if off > 0:
                    b.nets[i] -= off
                    b.applied[i].append(Applied("member_price", "会员价", "Member price", off,
                                                note=f"会员价¥{explain.compact_yuan(mp)}",
                                                note_en=f"member price ¥{explain.compact_yuan(mp)}"))

    candidates: dict[int, list[int]] = {}
    for i, line in enumerate(lines):
        for key in _line_keys(line):
            for pos in book.index.get(key, ()):
                found = candidates.get(pos)
                if found is None:
                    candidates[pos] = [i]
                elif found[-1] != i:
                    found.append(i)
    everyone = list(range(n))
    coupons: dict[str, CouponGrant] = {g.rule_id: g for g in ctx.coupons}
    uses: list[RuleUse] = []
    hints: list[_HintDraft] = []  # texts are written only for the few hints returned
    issues: dict[str, CouponIssue] = {}
    stopped: CompiledRule | None = None
    locked = False  # has an exclusive rule taken any line yet?
    nets, free, counted = b.nets, b.free, b.counted

    for pos in sorted(book.everywhere.union(candidates)) if n else ():
        r = book.rules[pos]
        if stopped is not None and not stopped.allows(r):
            continue
        grant = coupons.get(r.rule_id)
        if r.coupon and grant is None:
            continue
        if not r.anyone and not r.eligible(ctx):
            continue
        limits = r.limits
        budget_left: int | None = None
        if r.limited:
            usage = ctx.usage.get(r.rule_id)
            if usage is not None:
                if limits.per_member is not None and usage.member_uses >= limits.per_member:
                    continue
                if limits.max_uses is not None and usage.uses >= limits.max_uses:
                    continue
            if limits.budget is not None:
                budget_left = limits.budget - (usage.amount if usage is not None else 0)
                if budget_left <= 0:
                    continue
        pool = everyone if r.everything else candidates[pos]
        if r.excludes or r.exclusive or locked:
            idx = []
            for i in pool:
                item = lines[i].item
                if r.excludes and (item.sku in r.exclude_skus or item.category in r.exclude_cats):
                    continue
                if b.may_take(i, r):
                    idx.append(i)
            if not idx:
                continue
        else:
            idx = list(pool)
        kind = r.kind
        benefit = r.benefit
        gift_lines: list[int] = []
        base = idx
        if kind == GIFT:
            assert isinstance(benefit, FreeGift)
            base = [i for i in idx if lines[i].item.sku != benefit.sku]
            gift_lines = [i for i in range(n) if lines[i].item.sku == benefit.sku and counted[i] and free[i]
                          and b.may_take(i, r)]
        value_in = qty_in = 0
        if r.min_value or r.min_qty or kind == GIFT or kind == SPEND or (grant is not None and grant.min_spend):
            for i in base:
                value_in += nets[i]
                qty_in += free[i]
            if qty_in < r.min_qty or value_in < r.min_value or (kind == GIFT and value_in <= 0):
                if r.min_value and value_in < r.min_value and (r.min_value - value_in) * 10_000 <= \
                        r.min_value * HINT_WITHIN_BP and qty_in >= r.min_qty:
                    hints.append((pos, r, r.min_value - value_in, 0, _estimate(r, r.min_value), ""))
                elif r.min_qty and qty_in < r.min_qty and r.min_qty - qty_in <= HINT_WITHIN_QTY \
                        and value_in >= r.min_value:
                    hints.append((pos, r, 0, r.min_qty - qty_in, _estimate(r, value_in), ""))
                continue
            if grant is not None and value_in < grant.min_spend:
                issues[grant.code] = CouponIssue(grant.code, "coupon_min_spend", grant.min_spend - value_in)
                continue

        consumed: dict[int, int] = {}
        points = 0
        times = 1
        bases: list[tuple[int, int]] = []
        if kind == PERCENT:
            assert isinstance(benefit, PercentOff)
            amounts, times = _percent_off(b, idx, benefit.discount_bp, limits.per_basket)
        elif kind == FIXED:
            assert isinstance(benefit, FixedPrice)
            amounts, times = _fixed_price(b, idx, benefit, limits.per_basket, consumed)
        elif kind == SPEND:
            assert isinstance(benefit, SpendGetOff)
            threshold, off = benefit.threshold, benefit.off
            times = value_in // threshold if benefit.repeat else int(value_in >= threshold)
            cap = min(x for x in (benefit.max_times, limits.per_basket, times) if x is not None)
            more = benefit.repeat and cap == times
            times = cap
            if more or times == 0:
                short = threshold * (times + 1) - value_in
                if short * 10_000 <= threshold * HINT_WITHIN_BP:
                    hints.append((pos, r, short, 0, off, ""))
            amounts = allocate(min(off * times, value_in), [nets[i] for i in idx])
            bases = [(lines[i].line_no, nets[i]) for i in idx]
        elif kind == AMOUNT:
            assert isinstance(benefit, AmountOff)
            amounts, times = _amount_off(b, idx, benefit, limits.per_basket)
        elif kind == BUY_GET:
            assert isinstance(benefit, BuyNGetM)
            amounts, times = _buy_n_get_m(b, idx, benefit, limits.per_basket, consumed)
            size = benefit.buy + benefit.get
            spare = sum(free[i] for i in idx if counted[i]) % size
            short = size - spare if spare else 0
            capped = limits.per_basket is not None and times >= limits.per_basket
            if short and not capped and short <= HINT_WITHIN_QTY:
                gain = percent_of(_cheapest_unit(b, idx), benefit.discount_bp) * benefit.get
                hints.append((pos, r, 0, short, gain, ""))
        elif kind == POINTS:
            assert isinstance(benefit, PointsMultiplier)
            amounts = [0] * len(idx)
            points = benefit.multiplier_pct
        else:
            assert isinstance(benefit, FreeGift)
            idx = list(idx)
            amounts = [0] * len(idx)
            left = benefit.qty
            for i in gift_lines:
                k = min(left, free[i])
                if k <= 0:
                    break
                gift_amount = b.value(i, b.taken(i), k)
                consumed[i] = k
                left -= k
                if i in idx:
                    amounts[idx.index(i)] += gift_amount
                else:
                    idx.append(i)
                    amounts.append(gift_amount)
            times = benefit.qty - left
            if not gift_lines:
                hints.append((pos, r, 0, 0, 0, benefit.sku))
        total = sum(amounts)
        if budget_left is not None and total > budget_left:
            amounts = allocate(budget_left, amounts)
            total = budget_left
        if total <= 0 and not points and not consumed:
            if grant is not None:
                issues[grant.code] = CouponIssue(grant.code, "coupon_not_applicable")
            continue
        note, note_en = explain.times_note(r.note, r.note_en, times) if r.note and times > 1 else (r.note, r.note_en)
        rule = r.rule
        for k, i in enumerate(idx):
            amount = amounts[k]
            took = consumed.get(i, 0)
            if amount > 0 or points or took:
                nets[i] -= amount
                if points:
                    b.points_pct[i] = b.points_pct[i] * points // 100
                b.applied[i].append(Applied(r.rule_id, rule.name, rule.name_en, amount, points, note, note_en))
                b.touched[i].append(r)
                if r.exclusive:
                    b.lock[i] = r
                    locked = True
            if took:
                free[i] -= took
        uses.append(RuleUse(rule=rule, amount=total, times=times, coupon=grant.code if grant else None,
                            bases=bases))
        if r.stop:
            stopped = r

    redeemed = {u.coupon for u in uses}
    for g in ctx.coupons:
        if g.code not in issues and g.code not in redeemed:
            issues[g.code] = CouponIssue(g.code, "coupon_not_applicable")
    hints.sort(key=lambda h: h[0])
    return Evaluation(nets, b.applied, b.points_pct, uses, [_hint(*h[1:]) for h in hints[:MAX_HINTS]],
                      [issues[g.code] for g in ctx.coupons if g.code in issues])


_HintDraft = tuple[int, CompiledRule, int, int, int, str]  # order, rule, short_by, short_qty, gain, gift sku


def _estimate(r: CompiledRule, value: int) -> int:
    """What a missed rule would roughly give: its amount, or its percent of the qualifying value."""
    benefit = r.benefit
    if isinstance(benefit, PercentOff):
        return percent_of(value, benefit.discount_bp)
    if isinstance(benefit, AmountOff) and benefit.per == "basket":
        return benefit.amount
    if isinstance(benefit, SpendGetOff):
        return benefit.off
    return 0


def _hint(r: CompiledRule, short_by: int, short_qty: int, gain: int, gift_sku: str) -> Hint:
    name, name_en = r.rule.name, r.rule.name_en
    if gift_sku:
        text, text_en = explain.hint_gift(name, name_en, gift_sku)
    elif short_qty:
        text, text_en = explain.hint_qty(name, name_en, short_qty, gain)
    else:
        text, text_en = explain.hint_value(name, name_en, short_by, gain)
    return Hint(r.rule_id, name, name_en, short_by, short_qty, gain, text, text_en)


def period_key(period: str, at: datetime.datetime) -> str:
    """The usage bucket a per-member limit counts in: '2025-06-01', '2025-W22', '2025-06' or 'all'."""
    if period == "day":
        return at.date().isoformat()
    if period == "week":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{at.year:04d}-{at.month:02d}"
    return "all"
