"""Integer money arithmetic in fen: half-up rounding, tax-inclusive tax, exact allocation.

No floats anywhere: every division is integer division with an explicit rounding rule.
"""

from __future__ import annotations

from collections.abc import Sequence


def div_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero (denominator > 0)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q


def tax_included(amount: int, rate_bp: int) -> int:
    """Tax contained in a tax-inclusive amount: amount - amount / (1 + rate), half-up per line."""
    if rate_bp == 0:
        return 0
    net_of_tax = div_half_up(amount * 10_000, 10_000 + rate_bp)
    return amount - net_of_tax


def percent_of(amount: int, bp: int) -> int:
    """bp basis points of amount, half-up (1000 bp = 10 %)."""
    return div_half_up(amount * bp, 10_000)


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` over lines in proportion to `weights`; the parts sum exactly to `total`.

    Each part is floored; the remainder goes to the largest line (the first of equals), so a
    basket-level discount never produces an extra or missing fen. Every part stays within its
    weight when total <= sum(weights), so no line's net goes below zero.
    """
    if not weights:
        if total:
            raise ValueError("cannot allocate a non-zero amount over no lines")
        return []
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    base = sum(weights)
    if base == 0:
        parts = [0] * len(weights)
        parts[0] = total
        return parts
    parts = [total * w // base for w in weights]
    remainder = total - sum(parts)
    # Largest line first (first of equals); each takes at most up to its weight, so with many
    # small lines (e.g. 3 fen over four 1-fen lines) the remainder spills to the next-largest.
    order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
    for i in order:
        if remainder <= 0:
            break
        take = min(remainder, max(weights[i] - parts[i], 0))
        parts[i] += take
        remainder -= take
    parts[order[0]] += remainder  # only when total > sum(weights)
    return parts


def share_of_units(amount: int, units: int, done: int, taking: int) -> int:
    """What `taking` more of `units` are worth when `done` were already taken, out of `amount`.

    Cumulative rounding (round(amount*(done+taking)/units) - round(amount*done/units)): taking
    all units in any number of steps sums to exactly `amount`. Used for partial returns.
    """
    if units <= 0 or done < 0 or taking < 0 or done + taking > units:
        raise ValueError("units out of range")
    return div_half_up(amount * (done + taking), units) - div_half_up(amount * done, units)


def yuan(fen: int) -> str:
    """Display form: 1234 -> '12.34'."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
