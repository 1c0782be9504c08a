"""The chain merchant bill at HQ (docs/payments-hq.md): a payment provider's bill that covers every store of
the chain, split by store and matched against each store's synced tenders and refunds.

Import, in one transaction:
1. the file is parsed by the hub's own parsers (`edge.payments.statements`): one parser for hub and HQ;
2. each row is attributed to a store: by its reference (微信订单号 / 支付宝交易号 or 商户订单号) found among
   the stores' tenders and refunds (`hq_pay_tenders`), else by the provider's store field (Alipay 门店编号,
   a device or sub-merchant) through `hq_statement_store_codes` (or a field that is a store id itself),
   else to no store: a chain-level `paid_no_sale` (`refund_mismatch` for a refund row);
3. each store's rows are matched against that store's tenders and refunds of the bill's days by the hub's
   own matcher (`edge.payments.matching`): matched rows, anomalies, fees;
4. the split, the rows and the anomalies are stored, and the import audited.

The same file (by digest) imported again is the same statement and changes nothing; a row that an earlier
bill already brought (same provider and row key) is not held twice. A region manager sees the split of his
regions' stores only, and resolves their anomalies only; chain-level anomalies are finance's.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from hq_sync.server.service.access import Principal, require, require_store, scope_sql
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.storage.db import HqDb, Tx

Provider = Literal["wechat", "alipay", "csv"]
PROVIDERS: tuple[str, ...] = ("wechat", "alipay", "csv")
MAX_BYTES = 48 * 1024 * 1024  # a month of a big chain's WeChat bill is some 20 MB
MAX_ROWS = 500_000
MAX_NOTE = 500
CHAIN = ""  # the store_id of what no store claims
ANOMALY_KINDS = ("paid_no_sale", "sale_no_payment", "amount_mismatch", "duplicate_payment", "refund_mismatch")


class BillRow(msgspec.Struct, frozen=True):
    """One row of a provider's bill as HQ keeps it (amounts in fen, positive; `kind` says which way)."""

    row_no: int
    kind: Literal["payment", "refund"]
    transaction_id: str
    merchant_order: str
    refund_id: str
    amount: int
    fee: int
    at: str
    store_field: str = ""

    @property
    def row_key(self) -> str:
        """What makes a row the same row in two bills: the provider's numbers (a payment's transaction,
        a refund's refund number)."""
        return f"{self.kind}:{self.transaction_id}:{self.refund_id}:{self.merchant_order}"

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(r for r in (self.transaction_id, self.merchant_order, self.refund_id) if r)


class PayTender(msgspec.Struct, frozen=True, array_like=True):
    """A store's provider-paid tender (`doc_kind` 'sale') or refund ('refund') as HQ holds it."""

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


class Found(msgspec.Struct, frozen=True):
    """One anomaly of a store's match (or of the chain: `store_id` '')."""

    kind: str
    reference: str | None = None
    sale_id: str | None = None
    expected: int | None = None
    actual: int | None = None
    row_no: int | None = None
    detail: str = ""


class StoreMatch(msgspec.Struct, frozen=True):
    matched: list[int]  # row numbers of the bill that matched a tender or refund of the store
    anomalies: list[Found]


# -- the parts the hub lends ----------------------------------------------------------------------------------

def parse_bill(provider: str, data: bytes) -> list[BillRow]:
    """The file's rows, by the hub's own parser; a file it cannot read is a 422 `bad_statement`."""
    raise HqError(503, "parser_missing", "the statement parsers are not installed on this HQ")


def match_store(provider: str, rows: Sequence[BillRow], tenders: Sequence[PayTender], days: tuple[str, str]) \
        -> StoreMatch:
    """One store's rows against its tenders and refunds of the bill's days, by the hub's own matcher."""
    raise HqError(503, "matcher_missing", "the statement matcher is not installed on this HQ")


# -- import ---------------------------------------------------------------------------------------------------

def _day(at: str) -> str:
    return at[:10]


def _shift(day: str, days: int) -> str:
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=days)).isoformat()


def provider_methods(provider: str) -> tuple[str, ...]:
    """The tender methods a provider's bill covers."""
    return {"wechat": ("wechat",), "alipay": ("alipay",)}.get(provider, ("unionpay", "card"))


def _tenders(tx: Tx, methods: Sequence[str], first: str, last: str) -> list[PayTender]:
    marks = ", ".join("?" * len(methods))
    rows = tx.all(f"""SELECT store_id, doc_kind, doc_id, tender_no, sale_id, method, amount, reference, at, day
                      FROM hq_pay_tenders WHERE day >= ? AND day <= ? AND method IN ({marks})
                      ORDER BY store_id, at, doc_id, tender_no""", (first, last, *methods))
    tenders = msgspec.convert([tuple(r) for r in rows], list[PayTender], strict=False)
    # A refund sent without its own reference (an older hub) is known by its sale's reference for that method.
    by_sale = {(t.sale_id, t.method): t.reference for t in tenders if t.doc_kind == "sale" and t.reference}
    missing = {t.sale_id for t in tenders if t.doc_kind == "refund" and not t.reference}
    if missing - {s for s, _ in by_sale}:
        for sale_id, method, reference in _sale_references(tx, sorted(missing - {s for s, _ in by_sale})):
            by_sale.setdefault((sale_id, method), reference)
    return [msgspec.structs.replace(t, reference=by_sale.get((t.sale_id, t.method)))
            if t.doc_kind == "refund" and not t.reference else t for t in tenders]


def _sale_references(tx: Tx, sale_ids: list[str]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for start in range(0, len(sale_ids), 500):
        chunk = sale_ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        out += [(str(r[0]), str(r[1]), str(r[2])) for r in tx.all(
            f"""SELECT sale_id, method, reference FROM hq_pay_tenders WHERE doc_kind = 'sale'
                AND reference IS NOT NULL AND sale_id IN ({marks})""", chunk)]
    return out


def attribute(rows: Sequence[BillRow], tenders: Sequence[PayTender], codes: dict[str, str],
              stores: set[str]) -> tuple[dict[int, str], dict[int, str]]:
    """Which store each row belongs to ('' none) and how it was found ('reference', 'store_field', 'none').
    A reference two stores hold names neither: the store field decides."""
    owner: dict[str, str | None] = {}
    for t in tenders:
        if t.reference:
            held = owner.get(t.reference, t.store_id)
            owner[t.reference] = t.store_id if held == t.store_id else None
    store_of: dict[int, str] = {}
    how: dict[int, str] = {}
    for row in rows:
        found = next((owner[r] for r in row.references if owner.get(r)), None)
        if found:
            store_of[row.row_no], how[row.row_no] = found, "reference"
            continue
        code = row.store_field.strip()
        by_field = codes.get(code) or (code if code in stores else None)
        if by_field:
            store_of[row.row_no], how[row.row_no] = by_field, "store_field"
        else:
            store_of[row.row_no], how[row.row_no] = CHAIN, "none"
    return store_of, how


def _digest(provider: str, data: bytes) -> str:
    return hashlib.sha256(provider.encode() + b"\n" + data).hexdigest()


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
    rows = parse_bill(provider, data)
    if len(rows) > MAX_ROWS:
        raise HqError(413, "too_many_rows", f"a statement holds at most {MAX_ROWS} rows")
    if not rows:
        raise HqError(422, "empty_statement", "the file holds no bill rows")
    statement_id = str(uuid.uuid4())
    first, last = min(_day(r.at) for r in rows), max(_day(r.at) for r in rows)
    with db.write() as tx:
        twin = tx.one("SELECT statement_id FROM hq_statements WHERE digest = ?", (digest,))  # imported meanwhile
        if twin is None:
            _import(tx, principal, statement_id, provider, digest, file_name[:200], rows, first, last, at)
    if twin is not None:
        return {**view(db, principal, str(twin[0])), "duplicate": True}
    return {**view(db, principal, statement_id), "duplicate": False}


def _held_keys(tx: Tx, provider: str, keys: list[str]) -> set[str]:
    held: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        held |= {str(r[0]) for r in tx.all(
            f"SELECT row_key FROM hq_statement_rows WHERE provider = ? AND row_key IN ({marks})", (provider, *chunk))}
    return held


def _import(tx: Tx, principal: Principal, statement_id: str, provider: str, digest: str, file_name: str,
            rows: list[BillRow], first: str, last: str, at: str) -> None:
    # Rows an earlier bill brought are that bill's; rows twice in this file are kept (a duplicate charge
    # shows twice) under their row number.
    held = _held_keys(tx, provider, sorted({r.row_key for r in rows}))
    fresh = [row for row in rows if row.row_key not in held]
    methods = provider_methods(provider)
    # Tenders a day either side: a payment just before midnight may be booked on the next day's bill.
    window = _tenders(tx, methods, _shift(first, -1), _shift(last, 1))
    stores = {str(r[0]) for r in tx.all("SELECT store_id FROM hq_stores")}
    codes = {str(r[0]): str(r[1]) for r in tx.all(
        "SELECT code, store_id FROM hq_statement_store_codes WHERE provider = ?", (provider,))}
    store_of, how = attribute(fresh, window, codes, stores)
    by_store: dict[str, list[BillRow]] = {}
    for row in fresh:
        by_store.setdefault(store_of[row.row_no], []).append(row)
    tenders_of: dict[str, list[PayTender]] = {}
    for t in window:
        tenders_of.setdefault(t.store_id, []).append(t)
    matched: set[int] = set()
    found: list[tuple[str, Found]] = []
    # Every store with rows in the bill or provider tenders on its days is matched (a store whose payments
    # are all missing from the bill has no row but has `sale_no_payment`s).
    on_days = {t.store_id for t in window if first <= t.day <= last}
    for store_id in sorted((set(by_store) | on_days) - {CHAIN}):
        result = match_store(provider, by_store.get(store_id, []), tenders_of.get(store_id, []), (first, last))
        matched |= set(result.matched)
        found += [(store_id, a) for a in result.anomalies]
    for row in by_store.get(CHAIN, []):
        kind = "refund_mismatch" if row.kind == "refund" else "paid_no_sale"
        found.append((CHAIN, Found(kind, reference=row.transaction_id or row.merchant_order or None,
                                   actual=row.amount, row_no=row.row_no, detail="no store holds this payment")))
    tx.run("""INSERT INTO hq_statements (statement_id, provider, digest, file_name, rows_in_file, rows_new, first_day,
              last_day, imported_by, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
           (statement_id, provider, digest, file_name, len(rows), len(fresh), first, last, principal.username, at))
    tx.copy("hq_statement_rows", "statement_id, row_no, store_id, provider, row_key, kind, transaction_id, "
            "merchant_order, refund_id, amount, fee, at, store_field, attributed_by, matched",
            [(statement_id, r.row_no, store_of[r.row_no], provider, r.row_key, r.kind, r.transaction_id,
              r.merchant_order, r.refund_id, r.amount, r.fee, r.at, r.store_field[:64], how[r.row_no],
              1 if r.row_no in matched else 0) for r in _unique_keys(fresh)])
    tx.copy("hq_statement_anomalies", "statement_id, anomaly_no, store_id, kind, reference, sale_id, expected, "
            "actual, row_no, detail",
            [(statement_id, n, store_id, a.kind, a.reference, a.sale_id, a.expected, a.actual, a.row_no,
              a.detail[:200]) for n, (store_id, a) in enumerate(found, start=1)])
    split: dict[str, list[int]] = {}
    for row in fresh:
        cell = split.setdefault(store_of[row.row_no], [0, 0, 0, 0, 0, 0])
        cell[0] += 1
        cell[1 if row.kind == "payment" else 2] += row.amount
        cell[3] += row.fee
        cell[4] += 1 if row.row_no in matched else 0
    for store_id, _ in found:
        split.setdefault(store_id, [0, 0, 0, 0, 0, 0])[5] += 1
    tx.copy("hq_statement_stores", "statement_id, store_id, rows_held, paid, refunded, fees, matched, anomalies",
            [(statement_id, s, *v) for s, v in sorted(split.items())])
    audit(tx, principal, "statement.import", f"statement:{statement_id}", None,
          {"provider": provider, "file": file_name, "rows": len(rows), "new_rows": len(fresh),
           "days": [first, last], "anomalies": len(found)}, at=at)


def _unique_keys(rows: list[BillRow]) -> list[BillRow]:
    """The rows to store: one per row key (`UNIQUE (provider, row_key)`); a second row with the same key in
    one file is a duplicate the matcher reported, kept under a row key that names its row."""
    seen: set[str] = set()
    out: list[BillRow] = []
    for row in rows:
        if row.row_key in seen:
            row = msgspec.structs.replace(row, refund_id=f"{row.refund_id}#row{row.row_no}")
        seen.add(row.row_key)
        out.append(row)
    return out


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
        head = tx.one("""SELECT statement_id, provider, file_name, rows_in_file, rows_new, first_day, last_day,
                                imported_by, imported_at FROM hq_statements WHERE statement_id = ?""", (statement_id,))
        if head is None:
            raise HqError(404, "unknown_statement", f"no statement {statement_id[:64]}")
        where, args = scope_sql(principal, "store_id")
        split = tx.all(f"""SELECT store_id, rows_held, paid, refunded, fees, matched, anomalies
                           FROM hq_statement_stores WHERE statement_id = ? AND {where} ORDER BY store_id""",
                       (statement_id, *args))
        if principal.scoped and not split:
            raise HqError(404, "unknown_statement", f"no statement {statement_id[:64]}")
        anomalies = tx.all(f"""SELECT anomaly_no, store_id, kind, reference, sale_id, expected, actual, row_no,
                                      detail, resolved_at, resolved_by, note
                               FROM hq_statement_anomalies WHERE statement_id = ? AND {where}
                               ORDER BY store_id, anomaly_no""", (statement_id, *args))
        rows: list[tuple[Any, ...]] = []
        if rows_shown:
            rows = [tuple(r) for r in tx.all(
                f"""SELECT row_no, store_id, kind, transaction_id, merchant_order, refund_id, amount, fee, at,
                           store_field, attributed_by, matched
                    FROM hq_statement_rows WHERE statement_id = ? AND {where} ORDER BY row_no LIMIT ?""",
                (statement_id, *args, rows_shown))]
    head_keys = ("statement_id", "provider", "file_name", "rows_in_file", "rows_new", "first_day", "last_day",
                 "imported_by", "imported_at")
    store_keys = ("store_id", "rows", "paid", "refunded", "fees", "matched", "anomalies")
    anomaly_keys = ("anomaly_no", "store_id", "kind", "reference", "sale_id", "expected", "actual", "row_no",
                    "detail", "resolved_at", "resolved_by", "note")
    row_keys = ("row_no", "store_id", "kind", "transaction_id", "merchant_order", "refund_id", "amount", "fee", "at",
                "store_field", "attributed_by", "matched")
    out = dict(zip(head_keys, head, strict=True))
    out["stores"] = [dict(zip(store_keys, r, strict=True)) for r in split]
    out["anomalies"] = [dict(zip(anomaly_keys, r, strict=True)) for r in anomalies]
    for a in out["anomalies"]:
        a["resolved"] = a["resolved_at"] is not None
    if rows_shown:
        out["rows"] = [{**dict(zip(row_keys, r, strict=True)), "matched": bool(r[-1])} for r in rows]
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

