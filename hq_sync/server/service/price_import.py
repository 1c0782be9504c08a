"""Bulk price import from CSV: check every row, show the diff against current prices, then apply with progress.

The file: `sku,price[,store|region][,effective_at]`, UTF-8 (a BOM is fine), an optional header line.
`price` is whole fen; a header naming the column `price_yuan` reads it as yuan with up to two decimals
instead. The third column is a store id or a region name (empty: the whole chain); the fourth an
effective time (RFC 3339, or `YYYY-MM-DDTHH:MM` in China Standard Time; empty: at once).

Every row is checked and each error names its line (unknown sku, bad price, bad store, a store outside
the caller's regions, a duplicate of an earlier row, a bad time, a malformed row). An import with any
bad row is `invalid` and cannot run: nothing is applied until a corrected file is uploaded. A `ready`
import runs in chunks of CHUNK rows, each chunk one transaction that records its progress (`done`), so a
progress bar can follow it and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from hq_sync.server.service import targets
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.prices import MAX_PRICE, current_prices, effective_time, record_prices
from hq_sync.server.service.targets import Scope
from hq_sync.server.storage.db import HqDb, Tx

MAX_ROWS = 50_000
MAX_BYTES = 4 * 1024 * 1024
CHUNK = 200
SHOWN_ERRORS = 200


class ImportRow(msgspec.Struct, array_like=True):
    line: int
    sku: str
    price: int
    target: str  # "" chain, else a store id or a region name
    kind: str  # "chain", "store" or "region"
    effective_at: str | None
    name: str = ""
    current_min: int | None = None
    current_max: int | None = None


class RowError(msgspec.Struct, array_like=True):
    line: int
    code: str
    message: str


class ImportBody(msgspec.Struct):
    rows: list[ImportRow] = []
    errors: list[RowError] = []


def _price(text: str, yuan: bool) -> int | None:
    text = text.strip().replace(",", "") if yuan else text.strip()
    if not text or len(text) > 16:
        return None
    try:
        if yuan:
            value = Decimal(text)
            fen = value * 100
            if fen != fen.to_integral_value():
                return None
            out = int(fen)
        else:
            if not text.isdigit():
                return None
            out = int(text)
    except (InvalidOperation, ValueError):
        return None
    return out if 0 <= out <= MAX_PRICE else None


def _lines(data: bytes) -> list[tuple[int, list[str]]]:
    if len(data) > MAX_BYTES:
        raise HqError(413, "file_too_large", f"a price file is at most {MAX_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HqError(400, "bad_encoding", "the file is not UTF-8 text") from None
    out = []
    for n, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if any(c.strip() for c in cells):
            out.append((n, cells))
        if len(out) > MAX_ROWS + 1:
            raise HqError(413, "too_many_rows", f"a price file holds at most {MAX_ROWS} rows")
    return out


def check_file(tx: Tx, data: bytes, scope: Scope) -> ImportBody:
    """Every row parsed and checked against the catalog, the stores and the caller's scope (pure reads)."""
    lines = _lines(data)
    yuan = False
    if lines and lines[0][1] and lines[0][1][0].strip().lower() == "sku":
        yuan = len(lines[0][1]) > 1 and lines[0][1][1].strip().lower() == "price_yuan"
        lines = lines[1:]
    if not lines:
        raise HqError(422, "empty_file", "the file holds no price rows")
    skus = {str(r[0]): str(r[1]) for r in tx.all("SELECT sku, name_zh FROM hq_items")}
    stores = {str(r[0]): str(r[1]) for r in tx.all("SELECT store_id, region FROM hq_stores")}
    region_names = set(stores.values()) - {""}
    body = ImportBody()
    seen: dict[tuple[str, str, str | None], int] = {}
    for n, cells in lines:
        def bad(code: str, message: str, line: int = n) -> None:
            body.errors.append(RowError(line, code, message))

        if not 2 <= len(cells) <= 4:
            bad("bad_row", "a row is sku,price[,store or region][,effective_at]")
            continue
        sku, price_text = cells[0].strip(), cells[1]
        target = cells[2].strip() if len(cells) > 2 else ""
        when_text = cells[3].strip() if len(cells) > 3 else ""
        ok = True
        if sku not in skus:
            bad("unknown_sku", f"no item {sku[:64]!r}")
            ok = False
        price = _price(price_text, yuan)
        if price is None:
            bad("bad_price", f"{price_text.strip()[:20]!r} is not a price ("
                             + ("yuan, at most 2 decimals" if yuan else "whole fen") + f", 0 to {MAX_PRICE} fen)")
            ok = False
        kind = "chain"
        reach: set[str] | None = None
        if target in stores:
            kind, reach = "store", {target}
        elif target in region_names:
            kind, reach = "region", {s for s, r in stores.items() if r == target}
        elif target:
            bad("bad_store", f"{target[:64]!r} is neither a store nor a region")
            ok = False
        if scope is not None and not target:
            bad("out_of_scope", "a region manager's rows name a store or region of his own, not the chain")
            ok = False
        elif scope is not None and reach is not None and not reach <= scope:
            bad("out_of_scope", f"{target[:64]} is outside your regions")
            ok = False
        when: str | None = None
        try:
            when = effective_time(when_text)
        except HqError:
            bad("bad_time", f"{when_text[:40]!r} is not a time (RFC 3339, or YYYY-MM-DDTHH:MM)")
            ok = False
        key = (sku, target, when)
        if key in seen:
            bad("duplicate_row", f"the same sku, target and time as line {seen[key]}")
            ok = False
        else:
            seen[key] = n
        if ok:
            assert price is not None
            body.rows.append(ImportRow(n, sku, price, target, kind, when, skus[sku]))
    if not body.errors:
        for row in body.rows:
            reach_list = ["*"] if row.kind == "chain" else (
                [row.target] if row.kind == "store" else sorted(s for s, r in stores.items() if r == row.target))
            now = [p for p in current_prices(tx, row.sku, reach_list).values() if p is not None]
            row.current_min, row.current_max = (min(now), max(now)) if now else (None, None)
    return body


def preview(db: HqDb, principal: Principal, data: bytes, at: str) -> dict[str, Any]:
    """Check a file and keep it as an import: `ready` to run, or `invalid` with its line-numbered errors."""
    require(principal, "prices.write")
    actor = principal.username
    with db.read() as tx:
        body = check_file(tx, data, targets.scope_of(tx, principal))
    import_id = uuid.uuid4().hex
    state = "invalid" if body.errors else "ready"
    with db.write() as tx:
        tx.run("""INSERT INTO hq_price_imports (import_id, created_by, created_at, state, total, done, errors,
                  rows_json) VALUES (?, ?, ?, ?, ?, 0, ?, ?)""",
               (import_id, actor, at, state, len(body.rows), len(body.errors),
                msgspec.json.encode(body).decode()))
    return view(db, principal, import_id)


def _load(tx: Tx, import_id: str) -> tuple[Any, ...]:
    row = tx.one("""SELECT import_id, created_by, created_at, state, total, done, errors, rows_json, finished_at
                    FROM hq_price_imports WHERE import_id = ?""", (import_id[:64],))
    if row is None:
        raise HqError(404, "unknown_import", f"no price import {import_id[:64]}")
    return row


def view(db: HqDb, principal: Principal, import_id: str, rows_shown: int = 500) -> dict[str, Any]:
    """An import's state, progress, errors and diff rows (the first `rows_shown`); a user sees his own imports."""
    require(principal, "prices.write")
    with db.read() as tx:
        row = _load(tx, import_id)
    if row[1] != principal.username:
        raise HqError(404, "unknown_import", f"no price import {import_id[:64]}")
    body = msgspec.json.decode(row[7], type=ImportBody)
    changed = sum(1 for r in body.rows if r.current_min != r.price or r.current_max != r.price)
    return {"import_id": row[0], "created_by": row[1], "created_at": row[2], "state": row[3], "total": int(row[4]),
            "done": int(row[5]), "changed": changed, "finished_at": row[8],
            "percent": 100 if int(row[4]) == 0 else int(row[5]) * 100 // int(row[4]),
            "errors": [msgspec.to_builtins(e) for e in body.errors[:SHOWN_ERRORS]], "error_count": len(body.errors),
            "rows": [{"line": r.line, "sku": r.sku, "name": r.name, "price": r.price, "target": r.target or "*",
                      "kind": r.kind, "effective_at": r.effective_at, "current_min": r.current_min,
                      "current_max": r.current_max} for r in body.rows[:rows_shown]]}


def start(db: HqDb, principal: Principal, import_id: str, at: str) -> dict[str, Any]:
    """Mark a ready import running (409 for an invalid or finished one). The caller then runs `run_chunks`."""
    require(principal, "prices.write")
    with db.write() as tx:
        row = _load(tx, import_id)
        if row[1] != principal.username:
            raise HqError(404, "unknown_import", f"no price import {import_id[:64]}")
        if row[3] == "invalid":
            raise HqError(409, "import_invalid", f"the file has {int(row[6])} bad rows: fix them and upload it again")
        if row[3] == "done":
            raise HqError(409, "import_done", "this import has run already")
        tx.run("UPDATE hq_price_imports SET state = 'running' WHERE import_id = ?", (import_id,))
        audit(tx, principal, "price.import", f"import:{import_id}", {"state": row[3]},
              {"state": "running", "rows": int(row[4])}, at=at)
    return {"import_id": import_id, "state": "running"}


def run_chunks(db: HqDb, principal: Principal, private_key: bytes, import_id: str, at: str,
               notify: Any = None) -> None:
    """Apply a running import from where it stands, CHUNK rows per transaction. The scope is checked again
    (the stores of a region may have changed since the preview)."""
    require(principal, "prices.write")
    actor = principal.username
    while True:
        with db.write() as tx:
            row = _load(tx, import_id)
            if row[3] != "running" or row[1] != actor:
                return
            scope = targets.scope_of(tx, principal)
            body = msgspec.json.decode(row[7], type=ImportBody)
            done = int(row[5])
            chunk = body.rows[done:done + CHUNK]
            groups: dict[tuple[tuple[str, ...] | None, str | None], list[tuple[str, int]]] = {}
            for r in chunk:
                reach = None if r.kind == "chain" else targets.resolve(
                    tx, [r.target] if r.kind == "store" else [], [r.target] if r.kind == "region" else [], scope)
                groups.setdefault((None if reach is None else tuple(reach), r.effective_at), []).append(
                    (r.sku, r.price))
            for (reach_t, when), prices in groups.items():
                record_prices(tx, private_key, prices, None if reach_t is None else list(reach_t), when, at, actor,
                              f"import:{import_id}")
            done += len(chunk)
            finished = done >= len(body.rows)
            tx.run("UPDATE hq_price_imports SET done = ?, state = ?, finished_at = ? WHERE import_id = ?",
                   (done, "done" if finished else "running", at if finished else None, import_id))
        if notify is not None:
            notify()
        if finished:
            return
