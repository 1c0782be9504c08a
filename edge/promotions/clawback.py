"""Return policy for 满减: what happens when a return drops what the shopper keeps below a threshold.

Default (no clawback): each returned unit refunds its stored net and nothing else; the shopper keeps
the rest of the 满减 on the items they keep. With the hub option `return_clawback = true`, the
refund is reduced by the part of a 满减 the kept items no longer earn:

    due(kept) = sum over 满减 rules of max(0, amount still on kept units - benefit(kept base))

where the kept base is the kept units' share of what the threshold was measured on at sale time,
and benefit() is the rule as it was at sale time. Each return takes `due(kept after) - taken so far`
(negative gives earlier clawbacks back), never more than that return's refund. Returning every unit
leaves due = 0, so a sale returned in full always refunds exactly what was paid.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

import msgspec

from edge.money import div_half_up
from edge.promotions.rules import SpendGetOff, promotion_decoder


class SoldLine(msgspec.Struct, frozen=True):
    units: int  # qty, or grams for a weighed line
    amounts: dict[str, int]  # rule_id -> amount on this line


class ThresholdUse(msgspec.Struct, frozen=True):
    benefit: SpendGetOff
    per_basket: int | None
    rule_id: str
    bases: dict[int, int]  # line_no -> net the threshold was measured on


def benefit_at(use: ThresholdUse, base: int) -> int:
    b = use.benefit
    times = base // b.threshold if b.repeat else int(base >= b.threshold)
    for cap in (b.max_times, use.per_basket):
        if cap is not None:
            times = min(times, cap)
    return min(b.off * times, base)


def due(uses: list[ThresholdUse], sold: Mapping[int, SoldLine], kept: Mapping[int, int]) -> int:
    """What the kept units owe back in total (see the module docstring); `kept` is units per line."""
    total = 0
    for use in uses:
        base = still = 0
        for line_no, line in sold.items():
            k = kept.get(line_no, 0)
            if line.units <= 0 or k <= 0:
                continue
            base += div_half_up(use.bases.get(line_no, 0) * k, line.units)
            still += div_half_up(line.amounts.get(use.rule_id, 0) * k, line.units)
        total += max(0, still - benefit_at(use, base))
    return total


def step(uses: list[ThresholdUse], sold: Mapping[int, SoldLine], kept_after: Mapping[int, int], taken: int,
         refund: int) -> int:
    """One return's clawback: what the kept units owe after it, less what earlier returns took,
    never more than this return's refund (negative: earlier clawbacks come back)."""
    return min(due(uses, sold, kept_after) - taken, refund)


def clawback_for_return(conn: sqlite3.Connection, sale_id: str, taking: Mapping[int, int], refund: int) -> int:
    """This return's clawback: due after it, less what earlier returns took, at most its refund.
    `taking` is the units (grams for weighed lines) this return takes back, per line number."""
    uses = []
    for rule_id, rule_text, bases_text in conn.execute(
            "SELECT rule_id, rule, bases FROM sale_promotions WHERE sale_id = ?", (sale_id,)):
        rule = promotion_decoder.decode(rule_text)
        if isinstance(rule.benefit, SpendGetOff):
            bases = {int(n): int(v) for n, v in msgspec.json.decode(bases_text)}
            uses.append(ThresholdUse(rule.benefit, rule.limits.per_basket, rule_id, bases))
    taken = int(conn.execute("SELECT coalesce(sum(amount), 0) FROM return_clawbacks WHERE sale_id = ?",
                             (sale_id,)).fetchone()[0])
    if not uses and not taken:
        return 0
    sold = {}
    for line_no, qty, weight_g, applied in conn.execute(
            """SELECT l.line_no, l.qty, l.weight_g, l.applied FROM sale_lines l WHERE l.sale_id = ?""", (sale_id,)):
        amounts: dict[str, int] = {}
        for a in msgspec.json.decode(applied):
            amounts[a["rule_id"]] = amounts.get(a["rule_id"], 0) + int(a["amount"])
        sold[line_no] = SoldLine(weight_g if weight_g is not None and qty == 1 else qty, amounts)
    kept = {n: line.units - taking.get(n, 0) for n, line in sold.items()}
    for line_no, units in conn.execute(
            """SELECT rl.line_no, sum(coalesce(rl.weight_g, rl.qty)) FROM return_lines rl
               JOIN returns r ON r.return_id = rl.return_id WHERE r.sale_id = ? GROUP BY rl.line_no""", (sale_id,)):
        kept[line_no] = kept.get(line_no, 0) - int(units)
    return step(uses, sold, kept, taken, refund)


def record(conn: sqlite3.Connection, return_id: str, sale_id: str, amount: int) -> None:
    if amount:
        conn.execute("INSERT INTO return_clawbacks (return_id, sale_id, amount) VALUES (?, ?, ?)",
                     (return_id, sale_id, amount))
