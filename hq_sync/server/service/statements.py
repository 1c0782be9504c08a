"""The chain merchant bill at HQ (docs/payments-hq.md): a payment provider's bill that covers every store of
the chain, split by store and matched against each store's synced tenders and refunds.

Import (steps 2 and 3 on a read transaction, step 4 one write transaction):
1. the file is parsed by the hub's own parser (`edge.payments.statements.parse`): one parser for hub and HQ;
2. each row is attributed to a store: by its reference (微信订单号 / 支付宝交易号, 商户订单号, a refund's
   numbers) found among the stores' tenders and refunds (`hq_pay_tenders`), else by the provider's store
   field (Alipay 门店编号, a WeChat 设备号, a UnionPay 终端编号, else the sub-merchant) through
   `hq_statement_store_codes` (or a field that is a store id itself), else to no store: a chain-level
   `paid_no_sale` (`refund_mismatch` for a refund row);
3. each store's rows are matched against that store's tenders and refunds of the bill's method by the hub's
   own matcher (`edge.payments.matching.match`): matched rows and anomalies;
4. the split (rows, paid, refunded, fees, matched, anomalies per store), the rows and the anomalies are
   stored, and the import audited.

The same file (by digest) imported again is the same statement and changes nothing. An anomaly carries the
matcher's key, which names the same problem in another bill (a re-downloaded day inside a month's bill): its
resolution is carried over, so a manager resolves a problem once. A region manager sees the split of his
regions' stores only, and resolves their anomalies only; the chain-level ones are finance's.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from edge.payments.matching import HubRefund, MatchResult, Tender, match
from edge.payments.statements import (
    CsvMapping,
    Statement,
    StatementError,
    StatementRow,
    load_mapping,
    parse,
    row_keys,
)
from hq_sync.server.service.access import Principal, require, require_store, scope_sql
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import HqDb, Tx

PROVIDERS: tuple[str, ...] = ("wechat", "alipay", "csv")
MAX_BYTES = 48 * 1024 * 1024  # a month of a big chain's WeChat bill is some 20 MB
MAX_ROWS = 500_000
MAX_NOTE = 500
MAX_MAPPING = 16 * 1024
CHAIN = ""  # the store_id of what no store claims
CSV_MAPPING_KEY = "statement_csv_mapping"  # hq_chain_settings: the chain's mapping for `csv` bills


class PayTender(msgspec.Struct, frozen=True, array_like=True):
    """A store's provider-paid tender (`doc_kind` 'sale') or refund ('refund') as HQ holds it;
    `payment_reference` is, for a refund, the reference of the sale's tender it pays back."""

    store_id: str
    doc_kind: str
    doc_id: str
    tender_no: int
    sale_id: str
    method: str
    amount: int
    reference: str | None
    at: str
    day: str
    payment_reference: str | None = None


# -- import ---------------------------------------------------------------------------------------------------

def _shift(day: str, days: int) -> str:
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=days)).isoformat()


def _tenders(tx: Tx, method: str, first: str, last: str) -> list[PayTender]:
    rows = tx.all("""SELECT store_id, doc_kind, doc_id, tender_no, sale_id, method, amount, reference, at, day
                     FROM hq_pay_tenders WHERE day >= ? AND day <= ? AND method = ?
                     ORDER BY store_id, at, doc_id, tender_no""", (first, last, method))
    tenders = msgspec.convert([tuple(r) for r in rows], list[PayTender], strict=False)
    paid = {(t.store_id, t.sale_id): t.reference for t in tenders if t.doc_kind == "sale" and t.reference}
    wanted = sorted({(t.store_id, t.sale_id) for t in tenders if t.doc_kind == "refund"} - set(paid))
    if wanted:  # a refund of a sale made before the window
        paid.update(_sale_references(tx, method, wanted))
    return [msgspec.structs.replace(t, payment_reference=paid.get((t.store_id, t.sale_id)))
            if t.doc_kind == "refund" else t for t in tenders]


def _sale_references(tx: Tx, method: str, sales: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for start in range(0, len(sales), 400):
        chunk = sales[start:start + 400]
        marks = ", ".join("?" * len(chunk))
        for store_id, sale_id, reference in tx.all(
                f"""SELECT store_id, sale_id, reference FROM hq_pay_tenders WHERE doc_kind = 'sale' AND method = ?
                    AND reference IS NOT NULL AND sale_id IN ({marks})""", (method, *(s for _, s in chunk))):
            out.setdefault((str(store_id), str(sale_id)), str(reference))
    return out


def _references(row: StatementRow) -> tuple[str, ...]:
    return tuple(r for r in (row.transaction_id, row.merchant_order_no, row.refund_id, row.merchant_refund_no) if r)


def attribute(rows: Sequence[StatementRow], tenders: Sequence[PayTender], codes: dict[str, str],
              stores: set[str]) -> tuple[dict[int, str], dict[int, str]]:
    """Which store each row belongs to ('' none) and how it was found ('reference', 'store_field', 'none').
    A reference that two stores hold names neither: the store field decides."""
    owner: dict[str, str | None] = {}
    for t in tenders:
        for reference in (t.reference, t.payment_reference):
            if reference:
                held = owner.get(reference, t.store_id)
                owner[reference] = t.store_id if held == t.store_id else None
    store_of: dict[int, str] = {}
    how: dict[int, str] = {}
    for row in rows:
        found = next((owner[r] for r in _references(row) if owner.get(r)), None)
        if found:
            store_of[row.row_no], how[row.row_no] = found, "reference"
            continue
        by_field = None
        for field in (row.store.strip(), row.merchant_id.strip()):
            by_field = by_field or codes.get(field) or (field if field in stores else None) if field else by_field
        if by_field:
            store_of[row.row_no], how[row.row_no] = by_field, "store_field"
        else:
            store_of[row.row_no], how[row.row_no] = CHAIN, "none"
    return store_of, how


def match_store(rows: Sequence[StatementRow], tenders: Sequence[PayTender], provider: str,
                period: tuple[str, str]) -> MatchResult:
    """One store's rows against its tenders and refunds, by the hub's own matcher."""
    sales = [Tender(sale_id=t.sale_id, tender_no=t.tender_no, method=t.method, amount=t.amount, reference=t.reference,
                    time=t.at) for t in tenders if t.doc_kind == "sale"]
    refunds = [HubRefund(return_id=t.doc_id, refund_no=t.tender_no, sale_id=t.sale_id, method=t.method,
                         amount=t.amount, reference=t.reference, payment_reference=t.payment_reference, time=t.at)
               for t in tenders if t.doc_kind == "refund"]
    return match(rows, sales, refunds, provider=provider, period=period)


def _digest(provider: str, data: bytes) -> str:
    return hashlib.sha256(provider.encode() + b"\n" + data).hexdigest()


def _mapping(tx: Tx) -> CsvMapping | None:
    row = tx.one("SELECT value FROM hq_chain_settings WHERE key = ?", (CSV_MAPPING_KEY,))
    return None if row is None else load_mapping(str(row[0]).encode())


def _parse(db: HqDb, provider: str, data: bytes) -> Statement:
    with db.read() as tx:
        mapping = _mapping(tx) if provider == "csv" else None
    if provider == "csv" and mapping is None:
        raise HqError(409, "no_csv_mapping", "a csv bill needs the chain's column mapping first "
                      "(PUT /hq/v1/statement-csv-mapping)")
    try:
        return parse(provider, data, mapping)
    except StatementError as exc:
        raise HqError(422, "bad_statement", str(exc)[:300]) from None


def _period(statement: Statement) -> tuple[str, str]:
    """The bill's period as the matcher takes it: the file's own, else the whole days its rows fall on
    (China time, as the providers cut their bills)."""
    if statement.period_start and statement.period_end:
        return statement.period_start, statement.period_end
    first = min(r.time for r in statement.rows)[:10]
    last = max(r.time for r in statement.rows)[:10]
    return f"{first}T00:00:00+08:00", f"{_shift(last, 1)}T00:00:00+08:00"


def import_statement(db: HqDb, principal: Principal, provider: str, data: bytes, file_name: str,
                     at: str) -> dict[str, Any]:
    """Import one bill; the answer is the statement as `view` shows it, with `duplicate` true when this
    very file was imported before (nothing changed then)."""
    require(principal, "statements.import")
    if provider not in PROVIDERS:
        raise HqError(400, "bad_provider", f"provider is one of {', '.join(PROVIDERS)}")
    if len(data) > MAX_BYTES:
        raise HqError(413, "file_too_large", f"a statement file is at most {MAX_BYTES // (1024 * 1024)} MB")
    if not data.strip():
        raise HqError(422, "empty_file", "the file is empty")
    digest = _digest(provider, data)
    with db.read() as tx:
        held = tx.one("SELECT statement_id FROM hq_statements WHERE digest = ?", (digest,))
    if held is not None:
        return {**view(db, principal, str(held[0])), "duplicate": True}
    statement = _parse(db, provider, data)
    if len(statement.rows) > MAX_ROWS:
        raise HqError(413, "too_many_rows", f"a statement holds at most {MAX_ROWS} rows")
    if not statement.rows:
        raise HqError(422, "empty_statement", "the file holds no bill rows")
    statement_id = str(uuid.uuid4())
    # Split and match on a read transaction, so a big bill does not hold the writer (the stores' batches) for
    # its whole match; the write is only the recording. A tender that arrives in between is the next bill's.
    with db.read() as tx:
        prepared = _prepare(tx, provider, statement)
    with db.write() as tx:
        twin = tx.one("SELECT statement_id FROM hq_statements WHERE digest = ?", (digest,))  # imported meanwhile
        if twin is None:
            _record(tx, principal, statement_id, provider, digest, file_name[:200], statement, prepared, at)
    if twin is not None:
        return {**view(db, principal, str(twin[0])), "duplicate": True}
    return {**view(db, principal, statement_id), "duplicate": False}


def _held_keys(tx: Tx, provider: str, keys: list[str]) -> set[str]:
    held: set[str] = set()
    for start in range(0, len(keys), 400):
        chunk = keys[start:start + 400]
        marks = ", ".join("?" * len(chunk))
        held |= {str(r[0]) for r in tx.all(
            f"SELECT row_key FROM hq_statement_rows WHERE provider = ? AND row_key IN ({marks})", (provider, *chunk))}
    return held


def _resolutions(tx: Tx, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Resolutions of the same problems (store, key) in earlier bills."""
    out: dict[tuple[str, str], tuple[Any, ...]] = {}
    for store_id in sorted({s for s, _ in keys}):
        mine = sorted({k for s, k in keys if s == store_id})
        for start in range(0, len(mine), 400):
            chunk = mine[start:start + 400]
            marks = ", ".join("?" * len(chunk))
            for key, resolved_at, resolved_by, note in tx.all(
                    f"""SELECT anomaly_key, resolved_at, resolved_by, note FROM hq_statement_anomalies
                        WHERE store_id = ? AND resolved_at IS NOT NULL AND anomaly_key IN ({marks})""",
                    (store_id, *chunk)):
                out.setdefault((store_id, str(key)), (resolved_at, resolved_by, note))
    return out


class Prepared(msgspec.Struct):
    """A bill split and matched, ready to record."""

    keys: list[str]
    new_rows: int
    period: tuple[str, str]
    store_of: dict[int, str]
    how: dict[int, str]
    clean: set[int]
    found: list[tuple[str, str, dict[str, Any]]]  # (store, anomaly key, anomaly fields)


def _prepare(tx: Tx, provider: str, statement: Statement) -> Prepared:
    rows = statement.rows
    keys = row_keys(provider, rows)
    key_of = {r.row_no: k for r, k in zip(rows, keys, strict=True)}
    held = _held_keys(tx, provider, sorted(set(keys)))
    period = _period(statement)
    first, last = period[0][:10], period[1][:10]
    # Tenders a day either side: a payment just before midnight may be booked on the next day's bill.
    window = _tenders(tx, statement.method, _shift(first, -1), _shift(last, 1))
    stores = {str(r[0]) for r in tx.all("SELECT store_id FROM hq_stores")}
    codes = {str(r[0]): str(r[1]) for r in tx.all(
        "SELECT code, store_id FROM hq_statement_store_codes WHERE provider = ?", (provider,))}
    store_of, how = attribute(rows, window, codes, stores)
    by_store: dict[str, list[StatementRow]] = {}
    for row in rows:
        by_store.setdefault(store_of[row.row_no], []).append(row)
    tenders_of: dict[str, list[PayTender]] = {}
    for t in window:
        tenders_of.setdefault(t.store_id, []).append(t)
    clean: set[int] = set()
    found: list[tuple[str, str, dict[str, Any]]] = []  # (store, key, anomaly fields)
    # Every store with rows in the bill or tenders of the bill's method in its window is matched: a store
    # whose payments are all missing from the bill has no row but has its `sale_no_payment`s.
    for store_id in sorted((set(by_store) | set(tenders_of)) - {CHAIN}):
        result = match_store(by_store.get(store_id, []), tenders_of.get(store_id, []), provider, period)
        clean |= {m.row_no for m in result.matches if m.clean}
        found += [(store_id, a.key, {"kind": a.kind, "reference": a.reference, "sale_id": a.sale_id,
                                     "expected": a.expected, "actual": a.actual, "row_no": a.row_no})
                  for a in result.anomalies]
    for row in by_store.get(CHAIN, []):
        if row.kind == "revoked":
            continue  # pays nothing: nothing to claim
        found.append((CHAIN, f"unattributed|{key_of[row.row_no]}", {
            "kind": "refund_mismatch" if row.kind == "refund" else "paid_no_sale",
            "reference": row.transaction_id or row.merchant_order_no or None, "sale_id": None, "expected": None,
            "actual": row.amount, "row_no": row.row_no}))
    return Prepared(keys, sum(1 for k in keys if k not in held), period, store_of, how, clean, found)


def _record(tx: Tx, principal: Principal, statement_id: str, provider: str, digest: str, file_name: str,
            statement: Statement, prepared: Prepared, at: str) -> None:
    rows, keys, period = statement.rows, prepared.keys, prepared.period
    store_of, how, clean, found = prepared.store_of, prepared.how, prepared.clean, prepared.found
    key_of = {r.row_no: k for r, k in zip(rows, keys, strict=True)}
    earlier = _resolutions(tx, [(s, k) for s, k, _ in found])
    tx.run("""INSERT INTO hq_statements (statement_id, provider, method, digest, file_name, rows_in_file, rows_new,
              first_day, last_day, period_start, period_end, imported_by, imported_at)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
           (statement_id, provider, statement.method, digest, file_name, len(rows), prepared.new_rows,
            min(r.time for r in rows)[:10], max(r.time for r in rows)[:10],
            period[0], period[1], principal.username, at))
    tx.copy("hq_statement_rows", "statement_id, row_no, store_id, provider, row_key, kind, transaction_id, "
            "merchant_order, refund_id, amount, fee, at, store_field, attributed_by, matched",
            [(statement_id, r.row_no, store_of[r.row_no], provider, key_of[r.row_no], r.kind, r.transaction_id[:64],
              r.merchant_order_no[:64], (r.refund_id or r.merchant_refund_no)[:64], r.amount, r.fee, r.time,
              (r.store or r.merchant_id)[:64], how[r.row_no], 1 if r.row_no in clean else 0) for r in rows])
    tx.copy("hq_statement_anomalies", "statement_id, anomaly_no, store_id, anomaly_key, kind, reference, sale_id, "
            "expected, actual, row_no, resolved_at, resolved_by, note",
            [(statement_id, n, store_id, key[:300], a["kind"], a["reference"], a["sale_id"], a["expected"],
              a["actual"], a["row_no"], *earlier.get((store_id, key), (None, None, None)))
             for n, (store_id, key, a) in enumerate(found, start=1)])
    split: dict[str, list[int]] = {}
    for row in rows:
        cell = split.setdefault(store_of[row.row_no], [0, 0, 0, 0, 0, 0])
        cell[0] += 1
        if row.kind == "payment":
            cell[1] += row.amount
        elif row.kind == "refund":
            cell[2] += row.amount
        cell[3] += row.fee
        cell[4] += 1 if row.row_no in clean else 0
    for store_id, _, _ in found:
        split.setdefault(store_id, [0, 0, 0, 0, 0, 0])[5] += 1
    tx.copy("hq_statement_stores", "statement_id, store_id, rows_held, paid, refunded, fees, matched, anomalies",
            [(statement_id, s, *v) for s, v in sorted(split.items())])
    audit(tx, principal, "statement.import", f"statement:{statement_id}", None,
          {"provider": provider, "method": statement.method, "file": file_name, "rows": len(rows),
           "period": list(period), "stores": len([s for s in split if s]), "anomalies": len(found),
           "carried_resolutions": len(earlier)}, at=at)


# -- reading --------------------------------------------------------------------------------------------------

def listing(db: HqDb, principal: Principal, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """The bills, newest first, with their figures summed over the stores the principal sees (a region
    manager: the bills that touch his stores, and only their part)."""
    require(principal, "statements.read")
    where, args = scope_sql(principal, "p.store_id")
    with db.read() as tx:
        rows = tx.all(f"""SELECT s.statement_id, s.provider, s.file_name, s.rows_in_file, s.first_day, s.last_day,
                                 s.imported_by, s.imported_at, count(CASE WHEN p.store_id <> '' THEN 1 END),
                                 coalesce(sum(p.rows_held), 0),
                                 coalesce(sum(p.paid), 0), coalesce(sum(p.refunded), 0), coalesce(sum(p.fees), 0),
                                 coalesce(sum(p.matched), 0), coalesce(sum(p.anomalies), 0)
                          FROM hq_statements s JOIN hq_statement_stores p ON p.statement_id = s.statement_id
                          WHERE {where}
                          GROUP BY s.statement_id, s.provider, s.file_name, s.rows_in_file, s.first_day, s.last_day,
                                   s.imported_by, s.imported_at
                          ORDER BY s.imported_at DESC, s.statement_id LIMIT ? OFFSET ?""", (*args, limit, offset))
        open_where, open_args = scope_sql(principal, "a.store_id")
        open_rows = tx.all(f"""SELECT a.statement_id, count(*) FROM hq_statement_anomalies a
                               WHERE a.resolved_at IS NULL AND {open_where} GROUP BY a.statement_id""", open_args)
    still = {str(r[0]): int(r[1]) for r in open_rows}
    keys = ("statement_id", "provider", "file_name", "rows_in_file", "first_day", "last_day", "imported_by",
            "imported_at", "stores", "rows", "paid", "refunded", "fees", "matched", "anomalies")
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for s in out:
        s["open_anomalies"] = still.get(str(s["statement_id"]), 0)
        if principal.scoped:
            s["rows_in_file"] = None  # the whole file's count is the chain's
    return {"statements": out, "limit": limit, "offset": offset}


def view(db: HqDb, principal: Principal, statement_id: str, rows_shown: int = 0) -> dict[str, Any]:
    """One bill: per store (in scope) its rows held, paid, refunded, fees, matched, anomalies; the anomalies
    with their resolution; and with `rows_shown` the first rows of each store."""
    require(principal, "statements.read")
    with db.read() as tx:
        head = tx.one("""SELECT statement_id, provider, method, file_name, rows_in_file, rows_new, first_day, last_day,
                                period_start, period_end, imported_by, imported_at
                         FROM hq_statements WHERE statement_id = ?""", (statement_id,))
        if head is None:
            raise HqError(404, "unknown_statement", f"no statement {statement_id[:64]}")
        where, args = scope_sql(principal, "store_id")
        split = tx.all(f"""SELECT store_id, rows_held, paid, refunded, fees, matched, anomalies
                           FROM hq_statement_stores WHERE statement_id = ? AND {where} ORDER BY store_id""",
                       (statement_id, *args))
        if principal.scoped and not split:
            raise HqError(404, "unknown_statement", f"no statement {statement_id[:64]}")
        anomalies = tx.all(f"""SELECT anomaly_no, store_id, kind, reference, sale_id, expected, actual, row_no,
                                      anomaly_key, resolved_at, resolved_by, note
                               FROM hq_statement_anomalies WHERE statement_id = ? AND {where}
                               ORDER BY store_id, anomaly_no""", (statement_id, *args))
        rows: list[tuple[Any, ...]] = []
        if rows_shown:
            rows = [tuple(r) for r in tx.all(
                f"""SELECT row_no, store_id, kind, transaction_id, merchant_order, refund_id, amount, fee, at,
                           store_field, attributed_by, matched
                    FROM hq_statement_rows WHERE statement_id = ? AND {where} ORDER BY row_no LIMIT ?""",
                (statement_id, *args, rows_shown))]
    head_keys = ("statement_id", "provider", "method", "file_name", "rows_in_file", "rows_new", "first_day",
                 "last_day", "period_start", "period_end", "imported_by", "imported_at")
    store_keys = ("store_id", "rows", "paid", "refunded", "fees", "matched", "anomalies")
    anomaly_keys = ("anomaly_no", "store_id", "kind", "reference", "sale_id", "expected", "actual", "row_no",
                    "key", "resolved_at", "resolved_by", "note")
    row_fields = ("row_no", "store_id", "kind", "transaction_id", "merchant_order", "refund_id", "amount", "fee", "at",
                "store_field", "attributed_by", "matched")
    out = dict(zip(head_keys, head, strict=True))
    out["stores"] = [dict(zip(store_keys, r, strict=True)) for r in split]
    paid, refunded, fees = (sum(int(st[k]) for st in out["stores"]) for k in ("paid", "refunded", "fees"))
    out["totals"] = {"paid": paid, "refunded": refunded, "fees": fees, "net": paid - refunded - fees}
    out["anomalies"] = [dict(zip(anomaly_keys, r, strict=True)) for r in anomalies]
    for a in out["anomalies"]:
        a["resolved"] = a["resolved_at"] is not None
    if rows_shown:
        out["rows"] = [{**dict(zip(row_fields, r, strict=True)), "matched": bool(r[-1])} for r in rows]
    if principal.scoped:  # the whole file's counts are the chain's
        out["rows_in_file"], out["rows_new"] = None, sum(int(s["rows"]) for s in out["stores"])
    return out


# -- resolving ------------------------------------------------------------------------------------------------

def resolve(db: HqDb, principal: Principal, statement_id: str, anomaly_no: int, note: str, at: str) -> dict[str, Any]:
    """Resolve one anomaly with a note (audited). A region manager resolves his stores' only; an anomaly of
    no store (the chain's) is finance's."""
    require(principal, "statements.resolve")
    note = note.strip()
    if not note:
        raise HqError(422, "note_required", "say how the anomaly was resolved")
    if len(note) > MAX_NOTE:
        raise HqError(400, "note_too_long", f"a note is at most {MAX_NOTE} characters")
    with db.write() as tx:
        row = tx.one("""SELECT store_id, kind, resolved_at, reference, sale_id, expected, actual
                        FROM hq_statement_anomalies WHERE statement_id = ? AND anomaly_no = ?""",
                     (statement_id, anomaly_no))
        if row is None:
            raise HqError(404, "unknown_anomaly", f"no anomaly {anomaly_no} in statement {statement_id[:64]}")
        store_id = str(row[0])
        if store_id == CHAIN:
            if principal.scoped:
                raise HqError(403, "out_of_scope", "an anomaly no store claims is the chain's")
        else:
            require_store(tx, principal, store_id)
        if row[2] is not None:
            raise HqError(409, "anomaly_resolved", "this anomaly is resolved already")
        tx.run("""UPDATE hq_statement_anomalies SET resolved_at = ?, resolved_by = ?, note = ?
                  WHERE statement_id = ? AND anomaly_no = ? AND resolved_at IS NULL""",
               (at, principal.username, note, statement_id, anomaly_no))
        audit(tx, principal, "statement.resolve", f"statement:{statement_id}#{anomaly_no}",
              {"kind": row[1], "store_id": store_id, "reference": row[3], "sale_id": row[4], "expected": row[5],
               "actual": row[6]}, {"note": note}, at=at)
    return {"statement_id": statement_id, "anomaly_no": anomaly_no, "store_id": store_id, "resolved_at": at,
            "resolved_by": principal.username, "note": note}


# -- the provider's store field -------------------------------------------------------------------------------

def store_codes(db: HqDb, principal: Principal) -> dict[str, Any]:
    require(principal, "statements.read")
    where, args = scope_sql(principal, "store_id")
    with db.read() as tx:
        rows = tx.all(f"""SELECT provider, code, store_id, set_by, set_at FROM hq_statement_store_codes
                          WHERE {where} ORDER BY provider, code""", args)
    keys = ("provider", "code", "store_id", "set_by", "set_at")
    return {"codes": [dict(zip(keys, r, strict=True)) for r in rows]}


def set_store_code(db: HqDb, principal: Principal, provider: str, code: str, store_id: str | None,
                   at: str) -> dict[str, Any]:
    """Map the provider's store field `code` to `store_id` (None removes the mapping); audited."""
    require(principal, "statements.import")
    if provider not in PROVIDERS:
        raise HqError(400, "bad_provider", f"provider is one of {', '.join(PROVIDERS)}")
    code = code.strip()
    if not code:
        raise HqError(422, "empty_code", "the provider's store field is empty")
    with db.write() as tx:
        before = tx.one("SELECT store_id FROM hq_statement_store_codes WHERE provider = ? AND code = ?",
                        (provider, code))
        if store_id is None:
            tx.run("DELETE FROM hq_statement_store_codes WHERE provider = ? AND code = ?", (provider, code))
        else:
            if tx.one("SELECT 1 FROM hq_stores WHERE store_id = ?", (store_id,)) is None:
                raise HqError(404, "unknown_store", f"no store {store_id[:64]}")
            tx.run("""INSERT INTO hq_statement_store_codes (provider, code, store_id, set_by, set_at)
                      VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, code) DO UPDATE
                      SET store_id = excluded.store_id, set_by = excluded.set_by, set_at = excluded.set_at""",
                   (provider, code, store_id, principal.username, at))
        audit(tx, principal, "statement.store_code", f"{provider}:{code}",
              None if before is None else {"store_id": before[0]}, None if store_id is None else {"store_id": store_id},
              at=at)
    return {"provider": provider, "code": code, "store_id": store_id}



def csv_mapping(db: HqDb, principal: Principal) -> dict[str, Any]:
    require(principal, "statements.read")
    with db.read() as tx:
        row = tx.one("SELECT value, updated_at, updated_by FROM hq_chain_settings WHERE key = ?", (CSV_MAPPING_KEY,))
    return {"mapping": None if row is None else row[0], "updated_at": None if row is None else row[1],
            "updated_by": None if row is None else row[2]}


def set_csv_mapping(db: HqDb, principal: Principal, text: bytes, at: str) -> dict[str, Any]:
    """The chain's column mapping for `csv` bills (UnionPay and others; TOML or JSON as the hub's
    `--mapping` file, docs/payments.md); checked before it is kept; audited."""
    require(principal, "statements.import")
    if len(text) > MAX_MAPPING:
        raise HqError(413, "mapping_too_large", f"a mapping is at most {MAX_MAPPING // 1024} KB")
    try:
        mapping = load_mapping(text)
    except StatementError as exc:
        raise HqError(422, "bad_mapping", str(exc)[:300]) from None
    value = text.decode("utf-8-sig")
    with db.write() as tx:
        before = tx.one("SELECT value FROM hq_chain_settings WHERE key = ?", (CSV_MAPPING_KEY,))
        tx.run("""INSERT INTO hq_chain_settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?)
                  ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at,
                  updated_by = excluded.updated_by""", (CSV_MAPPING_KEY, value, at, principal.username))
        audit(tx, principal, "statement.csv_mapping", "setting:" + CSV_MAPPING_KEY,
              None if before is None else {"mapping": before[0]}, {"mapping": value}, at=at)
    return {"provider": mapping.provider, "method": mapping.method, "updated_at": at}
