"""Catalog queries on a read connection: search, lookup by SKU, barcode or variable-measure label."""

from __future__ import annotations

import sqlite3

import msgspec

from edge.catalog.barcodes import VariableMeasureLayout, classify, parse_variable_measure
from edge.catalog.models import Item, LookupResult
from edge.errors import ApiError
from edge.money import div_half_up
from edge.pricing.price_lists import PriceBoard

_ITEM_SQL = """
SELECT i.sku, i.name_zh, i.name_en, i.category_id, i.unit, i.price, i.tax_rate_bp, i.plu,
       i.brand, i.tags,
       (SELECT group_concat(code, ' ') FROM barcodes b WHERE b.sku = i.sku) AS codes
FROM items i
"""


def _item(row: sqlite3.Row) -> Item:
    return Item(
        sku=row["sku"],
        name=row["name_zh"],
        name_zh=row["name_zh"],
        name_en=row["name_en"],
        category=row["category_id"],
        unit=row["unit"],
        price=row["price"],
        tax_rate_bp=row["tax_rate_bp"],
        barcodes=sorted(row["codes"].split(" ")) if row["codes"] else [],
        plu=row["plu"],
        brand=row["brand"],
        tags=msgspec.json.decode(row["tags"], type=list[str]),
    )


def item_by_sku(conn: sqlite3.Connection, sku: str) -> Item | None:
    row = conn.execute(_ITEM_SQL + " WHERE i.sku = ? AND i.active = 1", (sku,)).fetchone()
    return _item(row) if row else None


def item_by_plu(conn: sqlite3.Connection, plu: str) -> Item | None:
    row = conn.execute(_ITEM_SQL + " WHERE i.plu = ? AND i.active = 1", (plu,)).fetchone()
    return _item(row) if row else None


def search_items(
    conn: sqlite3.Connection, query: str, limit: int, offset: int, category: str | None = None
) -> tuple[list[Item], int]:
    where = ["i.active = 1"]
    args: list[object] = []
    if query:
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            "(i.sku LIKE ? ESCAPE '\\' OR i.name_zh LIKE ? ESCAPE '\\' OR i.name_en LIKE ? ESCAPE '\\'"
            " OR i.brand LIKE ? ESCAPE '\\'"
            " OR EXISTS (SELECT 1 FROM barcodes b WHERE b.sku = i.sku AND b.code = ?))"
        )
        args += [like, like, like, like, query]
    if category:
        where.append(
            "i.category_id IN (WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL"
            " SELECT c.category_id FROM categories c JOIN sub ON c.parent_id = sub.id) SELECT id FROM sub)"
        )
        args.append(category)
    clause = " WHERE " + " AND ".join(where)
    total = conn.execute("SELECT count(*) FROM items i" + clause, args).fetchone()[0]
    rows = conn.execute(_ITEM_SQL + clause + " ORDER BY i.sku LIMIT ? OFFSET ?", [*args, limit, offset])
    return [_item(r) for r in rows], int(total)


class Scanned(msgspec.Struct, frozen=True):
    """A scanned code resolved to its item, with what a variable-measure label embeds."""

    item: Item
    code: str
    symbology: str
    weight_g: int | None = None
    embedded_price: int | None = None


def resolve_code(conn: sqlite3.Connection, code: str, layout: VariableMeasureLayout) -> Scanned:
    """Resolve a scanned code to its item (catalog price). Raises ApiError 400 for a malformed
    code, 404 for an unknown one, 422 for a label that does not fit its item."""
    code = code.strip()
    symbology = classify(code)
    if symbology is None:
        raise ApiError(400, "invalid_barcode", f"'{code[:40]}' is not a valid barcode (check digit or format)")
    row = conn.execute("SELECT sku FROM barcodes WHERE code = ?", (code,)).fetchone()
    if row is not None:
        item = item_by_sku(conn, row["sku"])
        if item is None:
            raise ApiError(404, "unknown_barcode", f"barcode {code} belongs to no active item")
        return Scanned(item, code, symbology)
    vm = parse_variable_measure(code, layout)
    if vm is None:
        raise ApiError(404, "unknown_barcode", f"no item has barcode {code}")
    item = item_by_plu(conn, vm.plu)
    if item is None:
        raise ApiError(404, "unknown_barcode", f"no item has in-store number {vm.plu} (barcode {code})")
    if vm.embeds == "price":
        return Scanned(item, code, symbology, embedded_price=vm.value)
    if item.unit != "kg":
        raise ApiError(422, "not_weighed", f"{item.sku} is not sold by weight but {code} embeds a weight")
    if vm.value <= 0:
        raise ApiError(422, "invalid_weight", f"barcode {code} embeds a zero weight")
    return Scanned(item, code, symbology, weight_g=vm.value)


class ScanCache:
    """Scanned codes resolved to their items (catalog price), kept in memory while the catalog does not
    change: m180's triggers move settings 'catalog_version' on every write to items or barcodes, and
    `for_version` drops everything when it moved. One per hub; shared by its threads (plain dict
    operations under the GIL). Errors are never cached. Price lists apply after it, per quote."""

    LIMIT = 50_000  # weighed and priced labels are each a code of their own

    def __init__(self) -> None:
        self._version: str | None = None
        self._layout: VariableMeasureLayout | None = None
        self._scans: dict[str, Scanned] = {}

    def for_version(self, conn: sqlite3.Connection, layout: VariableMeasureLayout) -> dict[str, Scanned]:
        """The codes resolved under `layout` for the catalog `conn` sees now (call it inside the
        quote's read snapshot, once per quote)."""
        row = conn.execute("SELECT value FROM settings WHERE key = 'catalog_version'").fetchone()
        version = str(row[0]) if row else "0"
        if version != self._version or layout is not self._layout or len(self._scans) > self.LIMIT:
            self._scans = {}
            self._version, self._layout = version, layout
        return self._scans


def resolve_cached(conn: sqlite3.Connection, code: str, layout: VariableMeasureLayout,
                   scans: dict[str, Scanned] | None) -> Scanned:
    """`resolve_code` through a `ScanCache.for_version` dict made for `layout` (None: no cache)."""
    if scans is None:
        return resolve_code(conn, code, layout)
    found = scans.get(code)
    if found is None:
        found = scans[code] = resolve_code(conn, code, layout)
    return found


def lookup_barcode(
    conn: sqlite3.Connection, code: str, layout: VariableMeasureLayout, prices: PriceBoard | None = None,
    cache: ScanCache | None = None,
) -> LookupResult:
    """Resolve a scanned code at the price in force (`prices`, else the catalog price)."""
    scanned = resolve_cached(conn, code, layout, cache.for_version(conn, layout) if cache is not None else None)
    item = scanned.item if prices is None else prices.apply(conn, scanned.item)[0]
    if scanned.weight_g is not None:
        line_price = div_half_up(item.price * scanned.weight_g, 1000)
        return _lookup(item, scanned.code, scanned.symbology, weight_g=scanned.weight_g, line_price=line_price)
    if scanned.embedded_price is not None:
        label = msgspec.structs.replace(item, price=scanned.embedded_price)
        return _lookup(label, scanned.code, scanned.symbology, embedded_price=scanned.embedded_price,
                       line_price=scanned.embedded_price, item_price=item.price)
    return _lookup(item, scanned.code, scanned.symbology)


def _lookup(item: Item, code: str, symbology: str, **embedded: int) -> LookupResult:
    return LookupResult(
        sku=item.sku,
        name=item.name,
        name_zh=item.name_zh,
        name_en=item.name_en,
        category=item.category,
        unit=item.unit,
        price=item.price,
        tax_rate_bp=item.tax_rate_bp,
        barcodes=item.barcodes,
        barcode=code,
        symbology=symbology,
        **embedded,
    )
