"""Barcode symbologies, GS1 check digits and variable-measure (in-store) EAN-13 labels.

Variable-measure EAN-13 (GS1 prefixes 20-29) embed an in-store item number and a weight or a
price; which prefix means what is the chain's choice, so the layout is configuration
(`VariableMeasureLayout`), decoded strictly from the hub config.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Symbology = Literal["ean13", "ean8", "upca", "internal"]


def gs1_check_digit(body: str) -> int:
    """Mod-10 check digit of a GS1 number without its check digit (EAN-8/13, UPC-A, GTIN-14)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def gs1_valid(code: str) -> bool:
    return code.isascii() and code.isdigit() and len(code) >= 2 and gs1_check_digit(code[:-1]) == int(code[-1])


def classify(code: str) -> Symbology | None:
    """The symbology of a barcode, or None if it is not a valid code of any we accept.

    Digits-only codes must carry a correct GS1 check digit; internal codes start with a letter
    and contain only ASCII letters, digits and '-'.
    """
    if not code or len(code) > 32:
        return None
    if code.isascii() and code.isdigit():
        if not gs1_valid(code):
            return None
        return {13: "ean13", 8: "ean8", 12: "upca"}.get(len(code))  # type: ignore[return-value]
    if code.isascii() and code[0].isalpha() and all(c.isalnum() or c == "-" for c in code):
        return "internal"
    return None


class VariableMeasureRule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One GS1 prefix: `prefix` + item number (item_digits) + value (value_digits) + check digit."""

    prefix: str
    embeds: Literal["weight_g", "price"]
    item_digits: int = 5
    value_digits: int = 5


class VariableMeasureLayout(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    rules: tuple[VariableMeasureRule, ...] = (
        VariableMeasureRule(prefix="21", embeds="weight_g"),
        VariableMeasureRule(prefix="23", embeds="price"),
    )


class VariableMeasure(msgspec.Struct, frozen=True):
    plu: str
    embeds: Literal["weight_g", "price"]
    value: int


def parse_variable_measure(code: str, layout: VariableMeasureLayout) -> VariableMeasure | None:
    """Decode an in-store EAN-13 (prefix 20-29) by the layout; None if it is not one."""
    if len(code) != 13 or not code.isdigit() or not "20" <= code[:2] <= "29":
        return None
    if not gs1_valid(code):
        return None
    for rule in layout.rules:
        if code.startswith(rule.prefix) and len(rule.prefix) + rule.item_digits + rule.value_digits == 12:
            start = len(rule.prefix)
            plu = code[start : start + rule.item_digits]
            value = int(code[start + rule.item_digits : 12])
            return VariableMeasure(plu=plu, embeds=rule.embeds, value=value)
    return None


def make_variable_measure(prefix: str, plu: str, value: int, value_digits: int = 5) -> str:
    """Build an in-store label (used by the demo, the simulators and tests)."""
    body = f"{prefix}{plu}{value:0{value_digits}d}"
    if len(body) != 12:
        raise ValueError("layout does not make 12 digits")
    return body + str(gs1_check_digit(body))
