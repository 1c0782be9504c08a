"""Catalog rows and wire shapes: one msgspec Struct per thing, used for rows and JSON alike."""

from __future__ import annotations

from typing import Literal

import msgspec

Unit = Literal["each", "kg"]


class Category(msgspec.Struct, frozen=True):
    category_id: str
    parent_id: str | None
    name_zh: str
    name_en: str


class Item(msgspec.Struct, frozen=True):
    """An item as the till sees it. `price` is fen per unit, or fen per kg when unit is 'kg'."""

    sku: str
    name: str
    name_zh: str
    name_en: str
    category: str
    unit: Unit
    price: int
    tax_rate_bp: int
    barcodes: list[str]
    plu: str | None = None
    brand: str = ""
    tags: list[str] = []


class LookupResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """An item resolved from a scanned code, with what a variable-measure label embedded.

    `price` is the item's current price (per unit, or per kg for weighed items) — except for a
    price label (prefix 23), where it is the label's embedded price, as the contract says; the
    item's own price is then `item_price`. `line_price` is what the scanned line costs.
    """

    sku: str
    name: str
    name_zh: str
    name_en: str
    category: str
    unit: Unit
    price: int
    tax_rate_bp: int
    barcodes: list[str]
    barcode: str
    symbology: str
    weight_g: int | None = None
    embedded_price: int | None = None
    line_price: int | None = None
    item_price: int | None = None


class ItemPage(msgspec.Struct, frozen=True):
    items: list[Item]
    total: int
    limit: int
    offset: int
