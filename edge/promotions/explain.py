"""Explanation texts in zh-CN and English: what a benefit gives, and 凑单 hints.

Rule names come from HQ (`name`, `name_en`); these texts say what the rule did on a line ("满200减30",
"buy 2 get 1 free") and what the shopper could add to get a rule the basket misses.
"""

from __future__ import annotations

from edge.money import yuan
from edge.promotions.rules import (
    AmountOff,
    Benefit,
    BuyNGetM,
    FixedPrice,
    FreeGift,
    PercentOff,
    PointsMultiplier,
    SpendGetOff,
)


def compact_yuan(fen: int) -> str:
    """20000 -> '200', 19990 -> '199.9', 1234 -> '12.34' (as shelf tickets write amounts)."""
    text = yuan(fen)
    return text.rstrip("0").rstrip(".") if "." in text else text


def zhe(discount_bp: int) -> str:
    """Percent off as 折: 1000 bp off -> '9折', 1500 -> '8.5折', 10000 -> '免费'."""
    if discount_bp >= 10_000:
        return "免费"
    return f"{(10_000 - discount_bp) / 1000:g}折"


def percent(discount_bp: int) -> str:
    return f"{discount_bp / 100:g}%"


def multiple(pct: int) -> str:
    return f"{pct / 100:g}"


def describe(benefit: Benefit) -> tuple[str, str]:
    """What a benefit gives, (zh, en): ('满200减30', '¥30 off ¥200')."""
    match benefit:
        case PercentOff(discount_bp=bp):
            return zhe(bp), f"{percent(bp)} off"
        case AmountOff(amount=amount, per="unit"):
            return f"每件减¥{compact_yuan(amount)}", f"¥{compact_yuan(amount)} off each"
        case AmountOff(amount=amount):
            return f"立减¥{compact_yuan(amount)}", f"¥{compact_yuan(amount)} off"
        case FixedPrice(price=price, qty=1):
            return f"特价¥{compact_yuan(price)}", f"special price ¥{compact_yuan(price)}"
        case FixedPrice(price=price, qty=qty):
            return f"¥{compact_yuan(price)}任选{qty}件", f"{qty} for ¥{compact_yuan(price)}"
        case BuyNGetM(buy=buy, get=get, discount_bp=10_000):
            return f"买{buy}赠{get}", f"buy {buy} get {get} free"
        case BuyNGetM(buy=buy, get=get, discount_bp=bp):
            return f"买{buy}件，另{get}件{zhe(bp)}", f"buy {buy}, get {get} at {percent(bp)} off"
        case SpendGetOff(threshold=t, off=off, repeat=True):
            return f"每满{compact_yuan(t)}减{compact_yuan(off)}", f"¥{compact_yuan(off)} off every ¥{compact_yuan(t)}"
        case SpendGetOff(threshold=t, off=off):
            return f"满{compact_yuan(t)}减{compact_yuan(off)}", f"¥{compact_yuan(off)} off ¥{compact_yuan(t)}"
        case PointsMultiplier(multiplier_pct=pct):
            return f"积分{multiple(pct)}倍", f"{multiple(pct)}x points"
        case FreeGift(qty=qty):
            return f"赠品{qty}件", f"{qty} free gift" + ("s" if qty > 1 else "")
    raise AssertionError(f"unknown benefit {benefit!r}")  # pragma: no cover


def times_note(zh: str, en: str, times: int) -> tuple[str, str]:
    return (f"{zh} ×{times}", f"{en} x{times}") if times > 1 else (zh, en)


def hint_value(name: str, name_en: str, short_by: int, gain: int) -> tuple[str, str]:
    save_zh = f"，可省¥{yuan(gain)}" if gain else ""
    save_en = f" (save ¥{yuan(gain)})" if gain else ""
    return (f"再买¥{yuan(short_by)}即可享受「{name}」{save_zh}",
            f"Add ¥{yuan(short_by)} more to get '{name_en}'{save_en}")


def hint_qty(name: str, name_en: str, short_qty: int, gain: int) -> tuple[str, str]:
    save_zh = f"，可省约¥{yuan(gain)}" if gain else ""
    save_en = f" (save about ¥{yuan(gain)})" if gain else ""
    items = "item" if short_qty == 1 else "items"
    return (f"再买{short_qty}件即可享受「{name}」{save_zh}",
            f"Add {short_qty} more {items} to get '{name_en}'{save_en}")


def hint_gift(name: str, name_en: str, sku: str) -> tuple[str, str]:
    return f"已满足「{name}」：请扫描赠品 {sku}", f"'{name_en}' applies: scan the free gift {sku}"
