"""Stock-takes (盘点): open with a snapshot, enter counts, review variances, approve once.

A stock-take covers every item or one category with its subcategories. Opening it snapshots each
sku's on-hand and remembers the last movement id the snapshot includes. A count remembers the last
movement id when it was entered, so what was sold (or received) between the snapshot and the count
is expected, not a variance: expected = snapshot + movements between the two marks. Quantities are
those of the ledger: units for counted items, grams for weighed ones.

Approval posts, for each sku whose count differs from what was expected, one `count` movement
through the stock ledger (a shortage taken from batches first-expiring-first, as `service.adjust`
does), with one journal record for the whole stock-take and one outbox delta per movement, all in
one transaction. Skus nobody counted stay as they are unless the approver says `zero_uncounted`.
"""

from __future__ import annotations

import csv
import datetime
import sqlite3
import uuid
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from edge.errors import ApiError
from edge.journal import chain
from edge.money import div_half_up
from edge.outbox import queue as outbox
from edge.stock import ledger
from edge.stock.insights import prices_in_force
from edge.stock.ledger import Actor
from hq_sync.protocol import StockDelta

State = Literal["open", "submitted", "approved", "cancelled"]
Sku = Annotated[str, Meta(min_length=1, max_length=64)]
Counted = Annotated[int, Meta(ge=0, le=100_000_000)]
CSV_CHUNK = 200
_encoder = msgspec.json.Encoder()


# -- requests ----------------------------------------------------------------------------------------

class OpenRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """`category`: a category id (its subcategories included); none: every item."""

    stocktake_id: uuid.UUID
    category: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    note: Annotated[str, Meta(max_length=200)] = ""


class CountIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One count: the item by `sku` or by `barcode` (exactly one), `counted` units or grams."""

    counted: Counted
    sku: Sku | None = None
    barcode: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class CountsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    counts: Annotated[list[CountIn], Meta(min_length=1, max_length=5000)]


class ApproveRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    zero_uncounted: bool = False


# -- views -------------------------------------------------------------------------------------------

class Summary(msgspec.Struct, frozen=True):
    stocktake_id: str
    category: str | None
    state: State
    note: str
    opened_by: str
    opened_at: str
    submitted_by: str | None
    submitted_at: str | None
    closed_by: str | None  # who approved or cancelled it
    closed_at: str | None
    items: int  # skus in scope
    counted: int  # skus counted so far


class VarianceLine(msgspec.Struct, frozen=True):
    """A counted sku: `variance` = counted − expected; `value` = variance at the current price (fen)."""

    sku: str
    name_zh: str
    name_en: str
    unit: str
    expected: int
    counted: int
    variance: int
    price: int
    value: int
    counted_by: str | None
    counted_at: str | None


class UncountedLine(msgspec.Struct, frozen=True):
    sku: str
    name_zh: str
    name_en: str
    unit: str
    expected: int
    price: int


class ApprovalResult(msgspec.Struct, frozen=True):
    stocktake_id: str
    approved_by: str
    approved_at: str
    zero_uncounted: bool
    adjusted: int  # skus whose stock changed
    movements: list[int]
    variance_value: int  # fen, signed: negative is a shortage
    journal_seq: int
    journal_hash: str


class StocktakeView(msgspec.Struct, frozen=True):
    stocktake: Summary
    lines: list[VarianceLine]
    uncounted: list[UncountedLine]
    variance_value: int  # Σ value of the counted lines
    shortage_value: int  # Σ value of the lines counted short (≤ 0)
    result: ApprovalResult | None = None


class CountsResult(msgspec.Struct, frozen=True):
    applied: int
    items: int
    counted: int


class CsvError(msgspec.Struct, frozen=True):
    line: int
    message: str


class CsvImport(msgspec.Struct, frozen=True):
    applied: int
    errors: list[CsvError]


_result_decoder = msgspec.json.Decoder(ApprovalResult)

_SUMMARY_SQL = """
SELECT s.stocktake_id, s.category_id, s.state, s.note, s.opened_by, s.opened_at, s.submitted_by, s.submitted_at,
       s.closed_by, s.closed_at,
       (SELECT count(*) FROM stocktake_lines l WHERE l.stocktake_id = s.stocktake_id),
       (SELECT count(*) FROM stocktake_lines l WHERE l.stocktake_id = s.stocktake_id AND l.counted IS NOT NULL)
FROM stocktakes s"""


def _summary(row: sqlite3.Row | tuple[object, ...]) -> Summary:
    return Summary(*row)


def summary(conn: sqlite3.Connection, stocktake_id: str) -> Summary | None:
    row = conn.execute(_SUMMARY_SQL + " WHERE s.stocktake_id = ?", (stocktake_id,)).fetchone()
    return _summary(row) if row else None


def listing(conn: sqlite3.Connection, state: State | None = None, limit: int = 50, offset: int = 0) -> list[Summary]:
    where, args = ("WHERE s.state = ?", (state,)) if state else ("", ())
    rows = conn.execute(f"{_SUMMARY_SQL} {where} ORDER BY s.opened_at DESC, s.stocktake_id LIMIT ? OFFSET ?",
                        (*args, limit, offset))
    return [_summary(r) for r in rows]


def _mark(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(movement_id), 0) FROM stock_movements").fetchone()[0])


def _require(conn: sqlite3.Connection, stocktake_id: str, *states: State) -> Summary:
    found = summary(conn, stocktake_id)
    if found is None:
        raise ApiError(404, "unknown_stocktake", f"no stock-take {stocktake_id}")
    if found.state not in states:
        raise ApiError(409, "wrong_state", f"stock-take {stocktake_id} is {found.state}, not {' or '.join(states)}",
                       state=found.state)
    return found


# -- open --------------------------------------------------------------------------------------------

_SCOPE_SQL = """
WITH RECURSIVE tree(category_id) AS (
    SELECT category_id FROM categories WHERE category_id = :category
    UNION SELECT c.category_id FROM categories c JOIN tree t ON c.parent_id = t.category_id)
SELECT i.sku, coalesce((SELECT sum(b.on_hand) FROM stock_balance b WHERE b.sku = i.sku), 0) AS on_hand
FROM items i
WHERE (:category IS NULL OR i.category_id IN (SELECT category_id FROM tree))
  AND (i.active = 1 OR EXISTS (SELECT 1 FROM stock_balance b WHERE b.sku = i.sku AND b.on_hand != 0))
ORDER BY i.sku"""


def open_stocktake(conn: sqlite3.Connection, req: OpenRequest, digest: str, actor: Actor, at: str) -> Summary:
    """Open a stock-take with its snapshot. The same id with the same body answers the stock-take
    as it is now; with another body, 409. A sku may be in only one unfinished stock-take."""
    sid = str(req.stocktake_id)
    row = conn.execute("SELECT request_hash FROM stocktakes WHERE stocktake_id = ?", (sid,)).fetchone()
    if row is not None:
        if row[0] != digest:
            raise ApiError(409, "id_conflict", f"stocktake_id {sid} was already used with a different body")
        found = summary(conn, sid)
        assert found is not None
        return found
    if req.category is not None and conn.execute(
            "SELECT 1 FROM categories WHERE category_id = ?", (req.category,)).fetchone() is None:
        raise ApiError(422, "unknown_category", f"no category {req.category}", category=req.category)
    scope = conn.execute(_SCOPE_SQL, {"category": req.category}).fetchall()
    if not scope:
        raise ApiError(422, "empty_scope", f"category {req.category} holds no items")
    busy = conn.execute(
        """SELECT s.stocktake_id FROM stocktakes s WHERE s.state IN ('open', 'submitted') AND EXISTS (
               SELECT 1 FROM stocktake_lines l WHERE l.stocktake_id = s.stocktake_id AND l.sku IN (
                   SELECT value FROM json_each(?)))
           LIMIT 1""", (_encoder.encode([r[0] for r in scope]).decode(),)).fetchone()
    if busy is not None:
        raise ApiError(409, "stocktake_overlap", f"stock-take {busy[0]} still counts some of these items",
                       stocktake_id=busy[0])
    conn.execute(
        """INSERT INTO stocktakes (stocktake_id, category_id, state, note, snapshot_mark, request_hash, opened_by,
               opened_at) VALUES (?, ?, 'open', ?, ?, ?, ?, ?)""",
        (sid, req.category, req.note, _mark(conn), digest, actor.user_id, at))
    conn.executemany("INSERT INTO stocktake_lines (stocktake_id, sku, snapshot) VALUES (?, ?, ?)",
                     [(sid, r[0], r[1]) for r in scope])
    conn.execute("INSERT INTO audit (at, user_id, till_id, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                 (at, actor.user_id, actor.till_id, "stocktake.open", sid,
                  _encoder.encode({"category": req.category, "items": len(scope)}).decode()))
    found = summary(conn, sid)
    assert found is not None
    return found


# -- counts ------------------------------------------------------------------------------------------

def _by_sku(conn: sqlite3.Connection, sku: str) -> str | None:
    return sku if conn.execute("SELECT 1 FROM items WHERE sku = ?", (sku,)).fetchone() else None


def _by_barcode(conn: sqlite3.Connection, code: str) -> str | None:
    """A shelf barcode, or the in-store number (PLU) of a weighed item."""
    row = conn.execute("SELECT sku FROM barcodes WHERE code = ?1 UNION ALL SELECT sku FROM items WHERE plu = ?1",
                       (code,)).fetchone()
    return str(row[0]) if row else None


def _resolve(conn: sqlite3.Connection, count: CountIn) -> str:
    """The sku a count names; 422 `unknown_item` (with the sku or barcode) when there is none."""
    if (count.sku is None) == (count.barcode is None):
        raise ApiError(422, "sku_or_barcode", "each count names exactly one of sku and barcode")
    if count.sku is not None:
        sku = _by_sku(conn, count.sku)
        if sku is None:
            raise ApiError(422, "unknown_item", f"no item with sku {count.sku}", sku=count.sku)
        return sku
    code = (count.barcode or "").strip()
    sku = _by_barcode(conn, code)
    if sku is None:
        raise ApiError(422, "unknown_item", f"no item has barcode {code}", barcode=code)
    return sku


def _apply(conn: sqlite3.Connection, sid: str, counts: list[tuple[str, int]], actor: Actor, at: str) -> None:
    mark = _mark(conn)
    conn.executemany(
        """UPDATE stocktake_lines SET counted = ?, count_mark = ?, counted_by = ?, counted_at = ?
           WHERE stocktake_id = ? AND sku = ?""",
        [(counted, mark, actor.user_id, at, sid, sku) for sku, counted in counts])


def _in_scope(conn: sqlite3.Connection, sid: str, sku: str) -> bool:
    return conn.execute("SELECT 1 FROM stocktake_lines WHERE stocktake_id = ? AND sku = ?",
                        (sid, sku)).fetchone() is not None


def enter_counts(conn: sqlite3.Connection, stocktake_id: str, counts: list[CountIn], actor: Actor,
                 at: str) -> CountsResult:
    """Set counted quantities (a later count of a sku replaces the earlier one); all or nothing."""
    _require(conn, stocktake_id, "open")
    resolved: list[tuple[str, int]] = []
    for count in counts:
        sku = _resolve(conn, count)
        if not _in_scope(conn, stocktake_id, sku):
            raise ApiError(422, "not_in_scope", f"{sku} is not in stock-take {stocktake_id}", sku=sku)
        resolved.append((sku, count.counted))
    _apply(conn, stocktake_id, resolved, actor, at)
    found = summary(conn, stocktake_id)
    assert found is not None
    return CountsResult(applied=len(resolved), items=found.items, counted=found.counted)


def import_counts_csv(conn: sqlite3.Connection, stocktake_id: str, text: str, actor: Actor, at: str, *,
                      progress: Callable[[int, int], None] | None = None, chunk: int = CSV_CHUNK) -> CsvImport:
    """Apply `sku,counted` lines (a header line and blank lines are skipped; the first column may
    also be a barcode). Good lines are applied, bad ones reported with their 1-based line number.
    Works through the lines `chunk` at a time and calls `progress(done, total)` after each chunk."""
    _require(conn, stocktake_id, "open")
    rows = list(enumerate(text.splitlines(), start=1))
    total = len(rows)
    applied = 0
    errors: list[CsvError] = []
    for start in range(0, total, max(chunk, 1)):
        good: list[tuple[str, int]] = []
        for line_no, line in rows[start:start + max(chunk, 1)]:
            try:
                cells = [f.strip() for f in next(csv.reader([line]), [])]
            except csv.Error as exc:
                errors.append(CsvError(line_no, f"not a CSV line: {exc}"))
                continue
            if not any(cells) or (line_no == 1 and [c.lower() for c in cells] == ["sku", "counted"]):
                continue
            parsed = _csv_line(conn, stocktake_id, cells)
            if isinstance(parsed, str):
                errors.append(CsvError(line_no, parsed))
            else:
                good.append(parsed)
        _apply(conn, stocktake_id, good, actor, at)
        applied += len(good)
        if progress is not None:
            progress(min(start + max(chunk, 1), total), total)
    return CsvImport(applied=applied, errors=errors)


def _csv_line(conn: sqlite3.Connection, stocktake_id: str, cells: list[str]) -> tuple[str, int] | str:
    """(sku, counted), or what is wrong with the line."""
    if len(cells) != 2:
        return f"expected 2 fields (sku,counted), got {len(cells)}"
    code, qty = cells[0][:64], cells[1]
    if not (qty.isascii() and qty.isdigit()) or len(qty) > 9:
        return f"counted must be a whole number ≥ 0 (units, or grams for weighed items), not {qty[:20]!r}"
    sku = (_by_sku(conn, code) or _by_barcode(conn, code)) if code else None
    if sku is None:
        return f"no item with sku or barcode {code!r}"
    if not _in_scope(conn, stocktake_id, sku):
        return f"{sku} is not in this stock-take"
    return sku, int(qty)


# -- variances ---------------------------------------------------------------------------------------

_LINES_SQL = """
SELECT l.sku, i.name_zh, i.name_en, i.unit, i.price, l.counted, l.counted_by, l.counted_at, l.expected,
       l.snapshot + coalesce((SELECT sum(m.qty) FROM stock_movements m
                              WHERE m.sku = l.sku AND m.movement_id > :snapshot_mark
                                AND m.movement_id <= coalesce(l.count_mark, :now_mark)), 0) AS live_expected
FROM stocktake_lines l JOIN items i ON i.sku = l.sku
WHERE l.stocktake_id = :sid ORDER BY l.sku"""


def value_of(qty: int, unit: str, price: int) -> int:
    """Fen worth of a ledger quantity: units × price, or grams × price per kg / 1000 (half-up)."""
    return qty * price if unit == "each" else div_half_up(qty * price, 1000)


def view(conn: sqlite3.Connection, stocktake_id: str, store_id: str, at: str) -> StocktakeView | None:
    """The stock-take with each counted sku's variance (prices in force at `at`) and the skus not
    counted yet. Once approved, the expected levels are those it was approved against."""
    found = summary(conn, stocktake_id)
    if found is None:
        return None
    head = conn.execute("SELECT snapshot_mark, result FROM stocktakes WHERE stocktake_id = ?",
                        (stocktake_id,)).fetchone()
    rows = conn.execute(_LINES_SQL, {"sid": stocktake_id, "snapshot_mark": head[0],
                                     "now_mark": _mark(conn)}).fetchall()
    prices = prices_in_force(conn, {r[0]: r[4] for r in rows}, store_id, _parse(at))
    lines: list[VarianceLine] = []
    uncounted: list[UncountedLine] = []
    for sku, name_zh, name_en, unit, _, counted, by, counted_at, frozen, live in rows:
        expected = live if frozen is None else frozen
        price = prices[sku]
        if counted is None:
            uncounted.append(UncountedLine(sku, name_zh, name_en, unit, expected, price))
            continue
        variance = counted - expected
        lines.append(VarianceLine(sku, name_zh, name_en, unit, expected, counted, variance, price,
                                  value_of(variance, unit, price), by, counted_at))
    result = _result_decoder.decode(head[1]) if head[1] is not None else None
    return StocktakeView(stocktake=found, lines=lines, uncounted=uncounted,
                         variance_value=sum(ln.value for ln in lines),
                         shortage_value=sum(ln.value for ln in lines if ln.value < 0), result=result)


def _parse(at: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(at)


# -- state changes -----------------------------------------------------------------------------------

def submit(conn: sqlite3.Connection, stocktake_id: str, actor: Actor, at: str) -> Summary:
    _require(conn, stocktake_id, "open")
    conn.execute("UPDATE stocktakes SET state = 'submitted', submitted_by = ?, submitted_at = ? WHERE stocktake_id = ?",
                 (actor.user_id, at, stocktake_id))
    found = summary(conn, stocktake_id)
    assert found is not None
    return found


def cancel(conn: sqlite3.Connection, stocktake_id: str, actor: Actor, at: str) -> Summary:
    _require(conn, stocktake_id, "open", "submitted")
    conn.execute("UPDATE stocktakes SET state = 'cancelled', closed_by = ?, closed_at = ? WHERE stocktake_id = ?",
                 (actor.user_id, at, stocktake_id))
    conn.execute("INSERT INTO audit (at, user_id, till_id, action, target) VALUES (?, ?, ?, 'stocktake.cancel', ?)",
                 (at, actor.user_id, actor.till_id, stocktake_id))
    found = summary(conn, stocktake_id)
    assert found is not None
    return found


def approve(conn: sqlite3.Connection, stocktake_id: str, req: ApproveRequest, store_id: str, actor: Actor,
            at: str) -> ApprovalResult:
    """Post the variances of a submitted stock-take, once (approving it again is a 409)."""
    state = conn.execute("SELECT state FROM stocktakes WHERE stocktake_id = ?", (stocktake_id,)).fetchone()
    if state is not None and state[0] == "approved":
        raise ApiError(409, "already_approved", f"stock-take {stocktake_id} is already approved", state="approved")
    _require(conn, stocktake_id, "submitted")
    current = view(conn, stocktake_id, store_id, at)
    assert current is not None
    # (sku, expected, counted, variance, value) of every line whose stock changes.
    changes = [(ln.sku, ln.expected, ln.counted, ln.variance, ln.value) for ln in current.lines if ln.variance]
    frozen = [(ln.expected, None, stocktake_id, ln.sku) for ln in current.lines]
    if req.zero_uncounted:
        for u in current.uncounted:
            if u.expected:
                changes.append((u.sku, u.expected, 0, -u.expected, value_of(-u.expected, u.unit, u.price)))
        conn.execute("UPDATE stocktake_lines SET counted = 0, counted_by = ?, counted_at = ?"
                     " WHERE stocktake_id = ? AND counted IS NULL", (actor.user_id, at, stocktake_id))
    frozen += [(u.expected, None, stocktake_id, u.sku) for u in current.uncounted]
    conn.executemany("UPDATE stocktake_lines SET expected = ?, posted = ? WHERE stocktake_id = ? AND sku = ?", frozen)
    appended = chain.append(conn, "stock.stocktake", stocktake_id, at, {
        "user_id": actor.user_id, "category": current.stocktake.category, "zero_uncounted": req.zero_uncounted,
        "lines": [[sku, expected, counted, variance] for sku, expected, counted, variance, _ in changes]})
    movements: list[int] = []
    for sku, _, _, variance, _ in changes:
        movements += _post(conn, stocktake_id, sku, variance, actor, at, appended.seq)
        conn.execute("UPDATE stocktake_lines SET posted = ? WHERE stocktake_id = ? AND sku = ?",
                     (variance, stocktake_id, sku))
        ledger.check_thresholds(conn, sku, at)
    result = ApprovalResult(stocktake_id=stocktake_id, approved_by=actor.user_id, approved_at=at,
                            zero_uncounted=req.zero_uncounted, adjusted=len(changes), movements=movements,
                            variance_value=sum(c[4] for c in changes), journal_seq=appended.seq,
                            journal_hash=appended.hash)
    conn.execute("""UPDATE stocktakes SET state = 'approved', closed_by = ?, closed_at = ?, zero_uncounted = ?,
                        result = ? WHERE stocktake_id = ?""",
                 (actor.user_id, at, int(req.zero_uncounted), _encoder.encode(result), stocktake_id))
    return result


def _post(conn: sqlite3.Connection, ref: str, sku: str, delta: int, actor: Actor, at: str, seq: int) -> list[int]:
    """Book a count difference: a shortage from the batches first-expiring-first (expired ones
    included: they are what goes missing or gets thrown away), a surplus to the unbatched stock."""
    if delta < 0:
        parts = [(batch_id, -qty) for batch_id, qty in ledger.fefo(conn, sku, -delta, "0000-00-00")]
    else:
        parts = [(ledger.UNBATCHED, delta)]
    ids = []
    for batch_id, qty in parts:
        movement_id = ledger.record(conn, sku=sku, qty=qty, kind="count", at=at, actor=actor, ref=ref,
                                    batch_id=batch_id, reason="stocktake")
        outbox.append(conn, StockDelta(movement_id=movement_id, sku=sku, kind="count", qty=qty,
                                       user_id=actor.user_id, at=at, journal_seq=seq, ref=ref, reason="stocktake"),
                      ref, at)
        ids.append(movement_id)
    return ids
