"""The hub's statement book: import a parsed bill, match it against the store's tenders and refunds,
keep rows, matches and anomalies, and let a manager resolve an anomaly with a note (journaled).

The shell around the pure parts: `prepare` reads the store's tenders and refunds of the bill's method
around its period on a reader connection and runs the matcher (edge/payments/matching.py);
`record` writes the import in one transaction on the writer. The same bytes imported twice (per
provider) answer the first import's summary and write nothing; rows are kept once per row identity
and anomalies once per key, so a re-downloaded bill that overlaps an earlier one adds only what is
new.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from edge.errors import ApiError
from edge.journal import chain
from edge.payments import matching, statements
from edge.payments.bills import UNIONPAY_MAPPING
from edge.payments.matching import Anomaly, HubRefund, MatchResult, Tender
from edge.payments.statements import FeeSummary, Statement, StatementError
from edge.stock.ledger import Actor

MAPPING_PRESETS = {"unionpay": UNIONPAY_MAPPING}
AnomalyStatus = Literal["open", "resolved", "all"]
encoder = msgspec.json.Encoder()


class ImportAnomaly(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An anomaly as the import's answer and `backroom statements import` name it (CONTRACT.md)."""

    kind: str
    reference: str | None = None
    sale_id: str | None = None
    expected: int | None = None
    actual: int | None = None
    anomaly_id: int | None = None
    row_no: int | None = None
    tender_no: int | None = None
    return_id: str | None = None
    refund_no: int | None = None


class ImportResult(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    rows: int
    matched: int
    anomalies: list[ImportAnomaly]
    import_id: str
    method: str
    file_name: str
    content_hash: str
    period_start: str | None
    period_end: str | None
    fees: FeeSummary
    new_anomalies: int
    already_imported: bool = False


class Prepared(msgspec.Struct, frozen=True):
    """A parsed and matched bill, ready to be recorded."""

    statement: Statement
    content_hash: str
    file_name: str
    result: MatchResult


class ImportRow(msgspec.Struct, frozen=True):
    import_id: str
    provider: str
    method: str
    file_name: str
    account: str
    period_start: str | None
    period_end: str | None
    rows: int
    matched: int
    anomalies: int
    paid: int
    refunded: int
    fees: int
    user_id: str
    imported_at: str


class ProviderFees(msgspec.Struct, frozen=True):
    provider: str
    method: str
    imports: int
    rows: int
    paid: int
    refunded: int
    fees: int
    net: int


class ImportPage(msgspec.Struct, frozen=True):
    imports: list[ImportRow]
    total: int
    fees: list[ProviderFees]


class StoredAnomaly(msgspec.Struct, frozen=True):
    anomaly_id: int
    key: str
    import_id: str
    provider: str
    kind: str
    reference: str | None
    sale_id: str | None
    tender_no: int | None
    return_id: str | None
    refund_no: int | None
    expected: int | None
    actual: int | None
    found_at: str
    resolved_at: str | None
    resolved_by: str | None
    note: str | None


class AnomalyPage(msgspec.Struct, frozen=True):
    anomalies: list[StoredAnomaly]
    total: int
    open: int


class ResolveRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=500)]  # required and not blank: resolve() checks


def mapping_for(spec: str | bytes | None, name: str = "mapping.toml") -> statements.CsvMapping | None:
    """A mapped-CSV mapping: a preset name ("unionpay"), or the TOML/JSON text of one."""
    if spec is None:
        return None
    if isinstance(spec, str) and spec in MAPPING_PRESETS:
        return statements.load_mapping(MAPPING_PRESETS[spec].encode(), f"{spec}.toml")
    data = spec.encode() if isinstance(spec, str) else spec
    return statements.load_mapping(data, name)


def parse(provider: str, data: bytes, mapping: statements.CsvMapping | None) -> Statement:
    """Parse, turning a bad file into a 422 the API and the tablet show as it is."""
    try:
        return statements.parse(provider, data, mapping)
    except StatementError as exc:
        raise ApiError(422, "bad_statement", str(exc)) from None


def _window(statement: Statement) -> tuple[str, str] | None:
    """Local dates around the bill's period: candidates for matching (a day either side: a tender
    rung up before midnight and paid after it, or a store in another offset)."""
    if statement.period_start is None or statement.period_end is None:
        return None
    lo = datetime.fromisoformat(statement.period_start) - timedelta(days=1)
    hi = datetime.fromisoformat(statement.period_end) + timedelta(days=2)
    return lo.date().isoformat(), hi.date().isoformat()


def tenders_for(conn: sqlite3.Connection, method: str, window: tuple[str, str] | None) -> list[Tender]:
    lo, hi = window or ("0000", "9999")
    rows = conn.execute(
        """SELECT t.sale_id, t.tender_no, t.method, t.amount, t.reference, s.created_at
           FROM sales s JOIN sale_tenders t ON t.sale_id = s.sale_id
           WHERE s.created_at >= ? AND s.created_at < ? AND t.method = ?""",
        (lo, hi, method),
    ).fetchall()
    return [
        Tender(sale_id=r[0], tender_no=r[1], method=r[2], amount=r[3], reference=r[4] or None, time=r[5]) for r in rows
    ]


def refunds_for(conn: sqlite3.Connection, method: str, window: tuple[str, str] | None) -> list[HubRefund]:
    lo, hi = window or ("0000", "9999")
    rows = conn.execute(
        """SELECT f.return_id, f.refund_no, r.sale_id, f.method, f.amount, f.reference, f.tender_no, r.created_at,
                  coalesce(t.reference, (SELECT reference FROM sale_tenders o WHERE o.sale_id = r.sale_id
                                         AND o.method = f.method ORDER BY o.tender_no LIMIT 1))
           FROM returns r JOIN return_refunds f ON f.return_id = r.return_id
           LEFT JOIN sale_tenders t ON t.sale_id = r.sale_id AND t.tender_no = f.tender_no
           WHERE r.created_at >= ? AND r.created_at < ? AND f.method = ?""",
        (lo, hi, method),
    ).fetchall()
    return [
        HubRefund(
            return_id=r[0],
            refund_no=r[1],
            sale_id=r[2],
            method=r[3],
            amount=r[4],
            reference=r[5] or None,
            tender_no=r[6],
            time=r[7],
            payment_reference=r[8] or None,
        )
        for r in rows
    ]


def _method_named(
    conn: sqlite3.Connection, statement: Statement, window: tuple[str, str] | None,
) -> tuple[Statement, list[Tender]]:
    """The bill with the hub tender method whose tenders its references name most (UnionPay when none
    does: the mapped CSV's default), and that method's tenders."""
    named = {r.transaction_id for r in statement.rows} | {r.merchant_order_no for r in statement.rows}
    best: tuple[int, str, list[Tender]] | None = None
    for method in ("unionpay", "card", "alipay", "wechat"):
        tenders = tenders_for(conn, method, window)
        hits = sum(1 for t in tenders if t.reference is not None and t.reference in named)
        if best is None or hits > best[0]:
            best = (hits, method, tenders)
    assert best is not None
    return msgspec.structs.replace(statement, method=best[1]), best[2]


def prepare(conn: sqlite3.Connection, statement: Statement, data_hash: str, file_name: str) -> Prepared:
    """Match the bill against what the store recorded (a reader connection is enough)."""
    window = _window(statement)
    period = (
        (statement.period_start, statement.period_end)
        if statement.period_start is not None and statement.period_end is not None
        else None
    )
    if statement.method:
        tenders = tenders_for(conn, statement.method, window)
    else:  # a CSV read without a mapping and without a method column (statements.guess_mapping)
        statement, tenders = _method_named(conn, statement, window)
    result = matching.match(
        statement.rows,
        tenders,
        refunds_for(conn, statement.method, window),
        provider=statement.provider,
        period=period,
    )
    return Prepared(statement=statement, content_hash=data_hash, file_name=file_name, result=result)


def already(conn: sqlite3.Connection, provider: str, data_hash: str) -> ImportResult | None:
    """The first import of these bytes, if there was one."""
    row = conn.execute(
        "SELECT summary FROM statement_imports WHERE provider = ? AND content_hash = ?", (provider, data_hash)
    ).fetchone()
    if row is None:
        return None
    first = msgspec.json.decode(bytes(row[0]), type=ImportResult)
    return msgspec.structs.replace(first, already_imported=True)


def _public(a: Anomaly, anomaly_id: int | None) -> ImportAnomaly:
    return ImportAnomaly(
        kind=a.kind,
        reference=a.reference,
        sale_id=a.sale_id,
        expected=a.expected,
        actual=a.actual,
        anomaly_id=anomaly_id,
        row_no=a.row_no,
        tender_no=a.tender_no,
        return_id=a.return_id,
        refund_no=a.refund_no,
    )


def record(conn: sqlite3.Connection, prepared: Prepared, actor: Actor, at: str) -> ImportResult:
    """Write the import in the caller's (the writer's) transaction; the same bytes again write nothing."""
    st, result = prepared.statement, prepared.result
    first = already(conn, st.provider, prepared.content_hash)
    if first is not None:
        return first
    import_id = str(uuid.uuid4())
    keys = statements.row_keys(st.provider, st.rows)
    key_of = {r.row_no: k for r, k in zip(st.rows, keys, strict=True)}
    fee = statements.fees(st)
    conn.execute(
        """INSERT INTO statement_imports (import_id, provider, method, content_hash, file_name, account, period_start,
               period_end, rows, matched, anomalies, paid, refunded, fees, user_id, imported_at, journal_seq, summary)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?, 0, x'')""",
        (
            import_id,
            st.provider,
            st.method,
            prepared.content_hash,
            prepared.file_name,
            st.account,
            st.period_start,
            st.period_end,
            len(st.rows),
            fee.paid,
            fee.refunded,
            fee.fees,
            actor.user_id,
            at,
        ),
    )
    conn.executemany(
        """INSERT OR IGNORE INTO statement_rows (row_key, import_id, row_no, kind, transaction_id, merchant_order_no,
               refund_id, merchant_refund_no, amount, fee, at, store, status)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            (
                k,
                import_id,
                r.row_no,
                r.kind,
                r.transaction_id,
                r.merchant_order_no,
                r.refund_id,
                r.merchant_refund_no,
                r.amount,
                r.fee,
                r.time,
                r.store,
                r.status,
            )
            for r, k in zip(st.rows, keys, strict=True)
        ],
    )
    conn.executemany(
        """INSERT INTO statement_matches (row_key, kind, sale_id, tender_no, return_id, refund_no, matched_by, clean)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (row_key) DO UPDATE SET kind = excluded.kind, sale_id = excluded.sale_id,
               tender_no = excluded.tender_no, return_id = excluded.return_id, refund_no = excluded.refund_no,
               matched_by = excluded.matched_by, clean = excluded.clean""",
        [
            (key_of[m.row_no], m.kind, m.sale_id, m.tender_no, m.return_id, m.refund_no, m.by, int(m.clean))
            for m in result.matches
        ],
    )
    new = 0
    public: list[ImportAnomaly] = []
    for a in result.anomalies:
        cur = conn.execute(
            """INSERT INTO statement_anomalies (key, import_id, provider, kind, reference, sale_id, tender_no,
                   return_id, refund_no, expected, actual, row_key, found_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING""",
            (
                a.key,
                import_id,
                st.provider,
                a.kind,
                a.reference,
                a.sale_id,
                a.tender_no,
                a.return_id,
                a.refund_no,
                a.expected,
                a.actual,
                key_of.get(a.row_no) if a.row_no is not None else None,
                at,
            ),
        )
        new += cur.rowcount
        anomaly_id = conn.execute("SELECT anomaly_id FROM statement_anomalies WHERE key = ?", (a.key,)).fetchone()[0]
        public.append(_public(a, anomaly_id))
    appended = chain.append(
        conn,
        "statement_import",
        import_id,
        at,
        {
            "provider": st.provider,
            "method": st.method,
            "content_hash": prepared.content_hash,
            "rows": len(st.rows),
            "matched": result.matched,
            "anomalies": len(result.anomalies),
            "paid": fee.paid,
            "refunded": fee.refunded,
            "fees": fee.fees,
            "user_id": actor.user_id,
        },
    )
    summary = ImportResult(
        provider=st.provider,
        rows=len(st.rows),
        matched=result.matched,
        anomalies=public,
        import_id=import_id,
        method=st.method,
        file_name=prepared.file_name,
        content_hash=prepared.content_hash,
        period_start=st.period_start,
        period_end=st.period_end,
        fees=fee,
        new_anomalies=new,
    )
    conn.execute(
        "UPDATE statement_imports SET matched = ?, anomalies = ?, journal_seq = ?, summary = ? WHERE import_id = ?",
        (result.matched, len(result.anomalies), appended.seq, encoder.encode(summary), import_id),
    )
    return summary


def imports(conn: sqlite3.Connection, limit: int = 50, offset: int = 0) -> ImportPage:
    """The imports, newest first, and the fees per provider over all of them."""
    rows = conn.execute(
        """SELECT import_id, provider, method, file_name, account, period_start, period_end, rows, matched, anomalies,
                  paid, refunded, fees, user_id, imported_at
           FROM statement_imports ORDER BY imported_at DESC, import_id LIMIT ? OFFSET ?""",
        (limit, offset),
    ).fetchall()
    total = conn.execute("SELECT count(*) FROM statement_imports").fetchone()[0]
    fees = conn.execute(
        """SELECT provider, method, count(*), sum(rows), sum(paid), sum(refunded), sum(fees)
           FROM statement_imports GROUP BY provider, method ORDER BY provider, method"""
    ).fetchall()
    return ImportPage(
        imports=[ImportRow(*r) for r in rows],
        total=total,
        fees=[ProviderFees(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[4] - r[5] - r[6]) for r in fees],
    )


_ANOMALY_COLUMNS = """anomaly_id, key, import_id, provider, kind, reference, sale_id, tender_no, return_id, refund_no,
    expected, actual, found_at, resolved_at, resolved_by, note"""


def anomalies(
    conn: sqlite3.Connection,
    status: AnomalyStatus = "open",
    import_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> AnomalyPage:
    """Anomalies, oldest first; `open` ones by default."""
    where, args = [], []
    if status == "open":
        where.append("resolved_at IS NULL")
    elif status == "resolved":
        where.append("resolved_at IS NOT NULL")
    if import_id is not None:
        where.append("import_id = ?")
        args.append(import_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_ANOMALY_COLUMNS} FROM statement_anomalies {clause} ORDER BY anomaly_id LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    total = conn.execute(f"SELECT count(*) FROM statement_anomalies {clause}", args).fetchone()[0]
    still = conn.execute("SELECT count(*) FROM statement_anomalies WHERE resolved_at IS NULL").fetchone()[0]
    return AnomalyPage(anomalies=_stored(rows), total=total, open=still)


def _stored(rows: Sequence[sqlite3.Row | tuple[Any, ...]]) -> list[StoredAnomaly]:
    return [StoredAnomaly(*r) for r in rows]


def resolve(conn: sqlite3.Connection, anomaly_id: int, note: object, actor: Actor, at: str) -> StoredAnomaly:
    """Close an anomaly with the manager's note; the journal keeps who, when and why."""
    if not isinstance(note, str) or not note.strip():
        raise ApiError(400, "note_required", "say in a note how the anomaly was settled")
    text = note.strip()
    if len(text) > 500:
        raise ApiError(400, "note_too_long", "the note is longer than 500 characters")
    row = conn.execute(f"SELECT {_ANOMALY_COLUMNS} FROM statement_anomalies WHERE anomaly_id = ?", (anomaly_id,))
    found = row.fetchone()
    if found is None:
        raise ApiError(404, "unknown_anomaly", f"no statement anomaly {anomaly_id}")
    anomaly = _stored([found])[0]
    if anomaly.resolved_at is not None:
        raise ApiError(409, "already_resolved", f"anomaly {anomaly_id} was resolved at {anomaly.resolved_at}")
    appended = chain.append(
        conn,
        "statement_resolution",
        str(anomaly_id),
        at,
        {
            "key": anomaly.key,
            "kind": anomaly.kind,
            "reference": anomaly.reference,
            "sale_id": anomaly.sale_id,
            "expected": anomaly.expected,
            "actual": anomaly.actual,
            "note": text,
            "user_id": actor.user_id,
        },
    )
    conn.execute(
        """UPDATE statement_anomalies SET resolved_at = ?, resolved_by = ?, note = ?, journal_seq = ?
           WHERE anomaly_id = ?""",
        (at, actor.user_id, text, appended.seq, anomaly_id),
    )
    return msgspec.structs.replace(anomaly, resolved_at=at, resolved_by=actor.user_id, note=text)
