"""Payment reconciliation anomalies of a business day: what a manager should look at before (or
after) closing it. Each anomaly names its kind (the UI translates by kind), a severity, the till,
the references involved (sale ids, return ids, count ids) and an English message.

Kinds: cash_variance, missing_reference, duplicate_reference, refund_method_mismatch,
drawer_negative, change_without_cash, missing_cash_count, shift_variance (a shift closed over or short
by more than the alert), outside_shift (sales at a till that worked in shifts that day, made while no
shift was open there: they are in the day's X and Z but in no shift report).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from edge.eod.days import bounds
from edge.eod.models import EXTERNAL_METHODS, Anomaly, XReport

_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_EXTERNAL = ", ".join(f"'{m}'" for m in EXTERNAL_METHODS)


def _fen(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}¥{abs(amount) // 100}.{abs(amount) % 100:02d}"


def first_negative(opening_float: int, events: Iterable[tuple[str, int, str]]) -> tuple[str, int] | None:
    """Run the drawer through (at, cash delta, ref) events in time order (money in before money out at
    the same instant); the first event that takes it below zero, and the balance then. Pure."""
    balance = opening_float
    for _, delta, ref in sorted(events, key=lambda e: (e[0], -e[1])):
        balance += delta
        if balance < 0:
            return ref, balance
    return None


def _cash_variance(report: XReport, alert: int) -> list[Anomaly]:
    out = []
    for till in report.tills:
        c = till.count
        if c is not None and abs(c.variance) > alert:
            what = "short" if c.variance < 0 else "over"
            out.append(Anomaly(kind="cash_variance", severity="warning", till_id=till.till_id, refs=[c.count_id],
                               amount=c.variance,
                               message=f"till {till.till_id}: cash {what} by {_fen(abs(c.variance))} (counted "
                                       f"{_fen(c.counted)}, expected {_fen(c.expected)}; alert above {_fen(alert)})"))
    return out


def _missing_reference(conn: sqlite3.Connection, lo: str, hi: str) -> list[Anomaly]:
    return [Anomaly(kind="missing_reference", severity="warning", till_id=r[2], refs=[r[0]], amount=r[4],
                    message=f"receipt {r[1]}: {r[3]} tender of {_fen(r[4])} has no payment reference")
            for r in conn.execute(
                f"""SELECT s.sale_id, s.receipt_no, s.till_id, t.method, t.amount FROM sales s
                    JOIN sale_tenders t ON t.sale_id = s.sale_id
                    WHERE s.created_at >= ? AND s.created_at < ? AND t.method IN ({_EXTERNAL})
                      AND (t.reference IS NULL OR trim(t.reference) = '')
                    ORDER BY s.created_at, t.tender_no""", (lo, hi))]


def _duplicate_reference(conn: sqlite3.Connection, lo: str, hi: str) -> list[Anomaly]:
    """A payment reference of the day's sales that another sale (of any day) also carries."""
    uses: dict[str, list[sqlite3.Row]] = {}
    for r in conn.execute(
        f"""SELECT t.reference, t.method, s.sale_id, s.receipt_no, s.till_id FROM sale_tenders t
            JOIN sales s ON s.sale_id = t.sale_id
            WHERE t.reference IS NOT NULL AND t.reference IN (
                SELECT t2.reference FROM sales s2 JOIN sale_tenders t2 ON t2.sale_id = s2.sale_id
                WHERE s2.created_at >= ? AND s2.created_at < ? AND t2.method IN ({_EXTERNAL})
                  AND t2.reference IS NOT NULL AND trim(t2.reference) <> '')
              AND t.method IN ({_EXTERNAL})
            ORDER BY s.created_at, s.sale_id""", (lo, hi)):
        uses.setdefault(r[0], []).append(r)
    out = []
    for reference, rows in sorted(uses.items()):
        sales = list(dict.fromkeys(r[2] for r in rows))
        if len(sales) < 2:
            continue
        receipts = ", ".join(dict.fromkeys(r[3] for r in rows))
        tills = {r[4] for r in rows}
        out.append(Anomaly(kind="duplicate_reference", severity="critical",
                           till_id=rows[0][4] if len(tills) == 1 else None, refs=sales,
                           message=f"payment reference {reference} ({rows[0][1]}) is on {len(sales)} sales: "
                                   f"{receipts}"))
    return out


def _refund_method_mismatch(conn: sqlite3.Connection, lo: str, hi: str) -> list[Anomaly]:
    """A refund to a method the sale was not paid with (cash is fine for a sale paid by exchange credit)."""
    return [Anomaly(kind="refund_method_mismatch", severity="warning", till_id=r[2], refs=[r[0], r[1]], amount=r[5],
                    message=f"return of receipt {r[3]}: {_fen(r[5])} refunded to {r[4]}, which did not pay for it")
            for r in conn.execute(
                """SELECT r.return_id, r.sale_id, coalesce(r.till_id, s.till_id), s.receipt_no, f.method, f.amount
                   FROM returns r JOIN return_refunds f ON f.return_id = r.return_id
                   JOIN sales s ON s.sale_id = r.sale_id
                   WHERE r.created_at >= ? AND r.created_at < ? AND f.method <> 'exchange'
                     AND NOT EXISTS (SELECT 1 FROM sale_tenders t WHERE t.sale_id = r.sale_id
                                     AND (t.method = f.method OR (f.method = 'cash' AND t.method = 'exchange')))
                   ORDER BY r.created_at, f.refund_no""", (lo, hi))]


def _drawer_negative(conn: sqlite3.Connection, lo: str, hi: str, report: XReport) -> list[Anomaly]:
    events: dict[str | None, list[tuple[str, int, str]]] = {}
    for r in conn.execute(
        """SELECT s.till_id, s.created_at, s.sale_id,
                  coalesce((SELECT sum(t.amount) FROM sale_tenders t WHERE t.sale_id = s.sale_id
                            AND t.method = 'cash'), 0) - s.change
           FROM sales s WHERE s.created_at >= ? AND s.created_at < ?""", (lo, hi)):
        if r[3]:
            events.setdefault(r[0], []).append((r[1], r[3], r[2]))
    for r in conn.execute(
        """SELECT coalesce(r.till_id, s.till_id), r.created_at, r.return_id, f.amount FROM returns r
           JOIN return_refunds f ON f.return_id = r.return_id JOIN sales s ON s.sale_id = r.sale_id
           WHERE r.created_at >= ? AND r.created_at < ? AND f.method = 'cash'""", (lo, hi)):
        events.setdefault(r[0], []).append((r[1], -r[3], r[2]))
    for r in conn.execute(
        """SELECT till_id, created_at, topup_id, amount FROM topups
           WHERE created_at >= ? AND created_at < ? AND method = 'cash' AND till_id IS NOT NULL""", (lo, hi)):
        events.setdefault(r[0], []).append((r[1], r[3], r[2]))
    for r in conn.execute("SELECT till_id, created_at, move_id, amount FROM cash_moves"
                          " WHERE created_at >= ? AND created_at < ?", (lo, hi)):  # pay-outs and safe drops
        events.setdefault(r[0], []).append((r[1], -r[3], r[2]))
    floats = {t.till_id: t.cash.opening_float for t in report.tills}
    out = []
    for till_id, till_events in sorted(events.items(), key=lambda e: e[0] or ""):
        found = first_negative(floats.get(till_id, 0), till_events)
        if found is not None:
            ref, balance = found
            out.append(Anomaly(kind="drawer_negative", severity="critical", till_id=till_id, refs=[ref],
                               amount=balance,
                               message=f"till {till_id}: cash refunds took the drawer to {_fen(balance)}, "
                                       "more cash out than the float and the day's cash in"))
    return out


def _change_without_cash(conn: sqlite3.Connection, lo: str, hi: str) -> list[Anomaly]:
    """Change can only come out of cash tendered; anything else is a defect somewhere upstream."""
    return [Anomaly(kind="change_without_cash", severity="critical", till_id=r[2], refs=[r[0]], amount=r[3],
                    message=f"receipt {r[1]}: change {_fen(r[3])} given, but only {_fen(r[4])} cash was tendered")
            for r in conn.execute(
                """SELECT s.sale_id, s.receipt_no, s.till_id, s.change,
                          coalesce((SELECT sum(t.amount) FROM sale_tenders t WHERE t.sale_id = s.sale_id
                                    AND t.method = 'cash'), 0) AS cash
                   FROM sales s WHERE s.created_at >= ? AND s.created_at < ? AND s.change > 0 AND s.change > cash
                   ORDER BY s.created_at""", (lo, hi))]


def _missing_cash_count(report: XReport) -> list[Anomaly]:
    return [Anomaly(kind="missing_cash_count", severity="warning", till_id=t.till_id, refs=[],
                    amount=t.cash.expected,
                    message=f"till {t.till_id} sold {t.tickets} tickets but its cash has not been counted "
                            f"(expected {_fen(t.cash.expected)})")
            for t in report.tills if t.till_id is not None and t.tickets > 0 and t.count is None]


def _shift_variance(conn: sqlite3.Connection, lo: str, hi: str, alert: int) -> list[Anomaly]:
    return [Anomaly(kind="shift_variance", severity="warning", till_id=r[1], refs=[r[0]], amount=r[2],
                    message=f"till {r[1]}: the shift closed at {r[3][11:16]} was "
                            f"{'short' if r[2] < 0 else 'over'} by {_fen(abs(r[2]))}")
            for r in conn.execute(
                """SELECT shift_id, till_id, variance, closed_at FROM shifts
                   WHERE closed_at >= ? AND closed_at < ? AND abs(variance) > ? ORDER BY close_seq""",
                (lo, hi, alert))]


def _outside_shift(conn: sqlite3.Connection, lo: str, hi: str) -> list[Anomaly]:
    """A till's shifts never overlap, so a sale is in a shift iff the last shift opened before it is still open
    at its journal record: one index seek per sale."""
    rows = conn.execute(
        """SELECT s.till_id, s.sale_id, s.total FROM sales s
           WHERE s.created_at >= ? AND s.created_at < ?
             AND s.till_id IN (SELECT till_id FROM shifts WHERE opened_at < ?
                               AND (closed_at IS NULL OR closed_at >= ?))
             AND NOT coalesce((SELECT h.close_seq IS NULL OR s.journal_seq < h.close_seq FROM shifts h
                               WHERE h.till_id = s.till_id AND h.open_seq < s.journal_seq
                               ORDER BY h.open_seq DESC LIMIT 1), 0)
           ORDER BY s.till_id, s.journal_seq""", (lo, hi, hi, lo)).fetchall()
    by_till: dict[str, list[sqlite3.Row]] = {}
    for r in rows:
        by_till.setdefault(r[0], []).append(r)
    return [Anomaly(kind="outside_shift", severity="info", till_id=till, refs=[r[1] for r in sold],
                    amount=sum(r[2] for r in sold),
                    message=f"till {till}: {len(sold)} sales ({_fen(sum(r[2] for r in sold))}) made with no shift "
                            "open, in no shift report")
            for till, sold in by_till.items()]


def detect(conn: sqlite3.Connection, report: XReport, variance_alert: int) -> list[Anomaly]:
    """Every anomaly of `report.day`, most severe first. `report` is that day's X report (all tills)."""
    lo, hi = bounds(report.day)
    found = [*_cash_variance(report, variance_alert), *_missing_reference(conn, lo, hi),
             *_duplicate_reference(conn, lo, hi), *_refund_method_mismatch(conn, lo, hi),
             *_drawer_negative(conn, lo, hi, report), *_change_without_cash(conn, lo, hi),
             *_missing_cash_count(report), *_shift_variance(conn, lo, hi, variance_alert),
             *_outside_shift(conn, lo, hi)]
    return sorted(found, key=lambda a: _SEVERITY_RANK[a.severity])  # stable: detection order within a severity
