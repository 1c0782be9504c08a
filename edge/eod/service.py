"""End-of-day operations: set a float, count a drawer, read the X report and the anomalies, close the
day with a Z report. Each write is one transaction; a closed day is read from its frozen Z report.

The Z report freezes the X report at close time, the day's cash counts and the anomalies; it is
numbered in sequence, written with its journal record and its outbox delta in the same transaction,
and made once per day.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import msgspec

from edge.config import HubConfig
from edge.eod import anomalies, days, reports
from edge.eod import cash as drawers
from edge.eod.days import check_not_future
from edge.eod.models import (
    AfterClose,
    AnomalyReport,
    CashCount,
    CashCountRequest,
    Figures,
    TillFloat,
    Totals,
    XReport,
    ZList,
    ZReport,
    ZSummary,
    ZTotals,
)
from edge.errors import ApiError
from edge.journal import chain
from edge.lazy_import import LazyDecoder
from edge.outbox import queue as outbox
from edge.sales.checkout import Replay, replay_or_conflict
from edge.stock.ledger import Actor
from hq_sync.protocol import ZReportDelta

T = TypeVar("T")
encoder = msgspec.json.Encoder()
_z_decoder = LazyDecoder(lambda: msgspec.json.Decoder(ZReport))  # built on first use


class Settings(msgspec.Struct, frozen=True):
    """The hub options end of day reads (HubConfig.till_float, HubConfig.cash_variance_alert)."""

    till_float: int
    variance_alert: int

    @classmethod
    def of(cls, config: HubConfig) -> Settings:
        return cls(till_float=config.till_float, variance_alert=config.cash_variance_alert)


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction on a reader connection: every query of a report sees the same database."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def read(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    with snapshot(conn):
        return fn(conn)


def stored_z(conn: sqlite3.Connection, day: str) -> ZReport | None:
    row = conn.execute("SELECT report FROM z_reports WHERE day = ?", (day,)).fetchone()
    return _z_decoder.decode(row[0]) if row is not None else None


def after_close(conn: sqlite3.Connection, z: ZReport) -> AfterClose:
    """Sales and returns of the Z's day recorded after it was closed (times share the store's offset,
    so they compare as text; the created_at index bounds the scan)."""
    _, end = days.bounds(z.day)
    sales = conn.execute("SELECT count(*), coalesce(sum(total), 0) FROM sales WHERE created_at > ? AND created_at < ?",
                         (z.closed_at, end)).fetchone()
    returns = conn.execute("SELECT count(*), coalesce(sum(refund_total), 0) FROM returns"
                           " WHERE created_at > ? AND created_at < ?", (z.closed_at, end)).fetchone()
    return AfterClose(sales=sales[0], sales_total=sales[1], returns=returns[0], refunded=returns[1])


def _refuse_closed(conn: sqlite3.Connection, day: str) -> None:
    row = conn.execute("SELECT z_no FROM z_reports WHERE day = ?", (day,)).fetchone()
    if row is not None:
        raise ApiError(409, "day_closed", f"{day} was closed by Z report {row[0]}", z_no=row[0])


# -- reads ---------------------------------------------------------------------------------------------------

def x_report(conn: sqlite3.Connection, day: str, as_of: str, settings: Settings, till_id: str | None) -> XReport:
    """The day so far; for a closed day the figures frozen in its Z report."""
    z = stored_z(conn, day)
    if z is None:
        return reports.x_report(conn, day, as_of, settings.till_float, till_id)
    x = z.x
    x.closed, x.z_no = True, z.z_no
    if till_id is not None:
        x.store = None
        x.tills = [t for t in x.tills if t.till_id == till_id]
    return x


def anomaly_report(conn: sqlite3.Connection, day: str, as_of: str, settings: Settings) -> AnomalyReport:
    z = stored_z(conn, day)
    if z is not None:
        return AnomalyReport(day=day, closed=True, z_no=z.z_no, anomalies=z.anomalies)
    x = reports.x_report(conn, day, as_of, settings.till_float)
    return AnomalyReport(day=day, closed=False, z_no=None, anomalies=anomalies.detect(conn, x, settings.variance_alert))


def z_list(conn: sqlite3.Connection, limit: int, offset: int) -> ZList:
    rows = conn.execute(
        """SELECT z_no, day, closed_at, user_id, tickets, net, refunded, cash_expected, cash_counted, cash_variance,
                  anomalies, journal_seq FROM z_reports ORDER BY z_no DESC LIMIT ? OFFSET ?""", (limit, offset))
    total = conn.execute("SELECT count(*) FROM z_reports").fetchone()[0]
    return ZList(z_reports=[ZSummary(*r) for r in rows], total=total)


def z_body(conn: sqlite3.Connection, z_no: int) -> bytes | None:
    row = conn.execute("SELECT report FROM z_reports WHERE z_no = ?", (z_no,)).fetchone()
    return bytes(row[0]) if row is not None else None


# -- writes --------------------------------------------------------------------------------------------------

def set_float(conn: sqlite3.Connection, day: str, today: str, till_id: str, amount: int, actor: Actor,
              at: str) -> TillFloat:
    check_not_future(day, today)
    _refuse_closed(conn, day)
    return drawers.set_float(conn, day, till_id, amount, actor.user_id, at)


def count_cash(conn: sqlite3.Connection, req: CashCountRequest, digest: str, day: str, today: str, actor: Actor,
               at: str, settings: Settings) -> Replay | bytes:
    """Record a drawer count; its variance is against the expected cash at this moment."""
    replay = replay_or_conflict(conn, "cash_counts", "count_id", str(req.count_id), digest)
    if replay is not None:
        return replay
    check_not_future(day, today)
    _refuse_closed(conn, day)
    drawers.check_denominations(req)
    expected = reports.expected_cash(conn, day, req.till_id, settings.till_float)
    count = CashCount(count_id=str(req.count_id), day=day, till_id=req.till_id, counted=req.counted,
                      expected=expected, variance=req.counted - expected,
                      denominations=dict(sorted(req.denominations.items(), key=lambda kv: -int(kv[0])))
                      if req.denominations is not None else None,
                      user_id=actor.user_id, counted_at=at)
    body = encoder.encode(count)
    drawers.insert_count(conn, count, digest, body)
    return body


def period_totals(store: Figures) -> Totals:
    return Totals(tickets=store.tickets, net=store.net, tax=store.tax, returns=store.returns, refunded=store.refunded,
                  balance=store.net - store.refunded, absolute=store.net + store.refunded)


def add_totals(a: Totals, b: Totals) -> Totals:
    return Totals(**{f: getattr(a, f) + getattr(b, f) for f in Totals.__struct_fields__})


def perpetual_before(conn: sqlite3.Connection) -> Totals:
    """The perpetual grand totals of the last Z; for Z reports closed before grand totals were kept, the sum
    of their periods (so GT runs from the store's first Z either way)."""
    last = conn.execute("SELECT report FROM z_reports ORDER BY z_no DESC LIMIT 1").fetchone()
    if last is None:
        return Totals()
    z = _z_decoder.decode(last[0])
    if z.totals is not None:
        return z.totals.perpetual
    total = Totals()
    for (report,) in conn.execute("SELECT report FROM z_reports ORDER BY z_no"):
        older = _z_decoder.decode(report)
        if older.x.store is not None:
            total = add_totals(total, older.totals.period if older.totals is not None
                               else period_totals(older.x.store))
    return total


def grand_totals(conn: sqlite3.Connection, day: str, x: XReport) -> ZTotals:
    assert x.store is not None
    period = period_totals(x.store)
    lo, hi = days.bounds(day)
    return ZTotals(period_from=lo, period_to=hi, period=period, perpetual=add_totals(perpetual_before(conn), period))


def close_day(conn: sqlite3.Connection, day: str, today: str, actor: Actor, at: str, settings: Settings) -> bytes:
    """Close `day`: freeze, number, store, journal and queue its Z report. Once per day (409 after)."""
    check_not_future(day, today)
    _refuse_closed(conn, day)
    x = reports.x_report(conn, day, at, settings.till_float)
    found = anomalies.detect(conn, x, settings.variance_alert)
    z_no = int(conn.execute("SELECT coalesce(max(z_no), 0) + 1 FROM z_reports").fetchone()[0])
    x.closed, x.z_no = True, z_no
    z = ZReport(z_no=z_no, day=day, closed_at=at, closed_by=actor.user_id, x=x, counts=drawers.counts(conn, day),
                anomalies=found, totals=grand_totals(conn, day, x))
    record = msgspec.to_builtins(z)
    del record["journal_seq"], record["journal_hash"]
    appended = chain.append(conn, "z_report", f"Z{z_no}", at, record)
    z.journal_seq, z.journal_hash = appended.seq, appended.hash
    body = encoder.encode(z)
    assert x.store is not None
    counted = [t.count for t in x.tills if t.count is not None]
    cash_counted = sum(c.counted for c in counted)
    cash_variance = sum(c.variance for c in counted)
    conn.execute(
        """INSERT INTO z_reports (z_no, day, closed_at, user_id, tickets, net, refunded, cash_expected, cash_counted,
               cash_variance, anomalies, report, journal_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (z_no, day, at, actor.user_id, x.store.tickets, x.store.net, x.store.refunded, x.store.cash.expected,
         cash_counted, cash_variance, len(found), body, appended.seq),
    )
    outbox.append(conn, ZReportDelta(
        z_no=z_no, day=day, at=at, user_id=actor.user_id, tickets=x.store.tickets, net=x.store.net, tax=x.store.tax,
        refunded=x.store.refunded, tenders={m: a for m, a in x.store.tenders.items() if a},
        cash_expected=x.store.cash.expected,
        cash_counted=cash_counted, cash_variance=cash_variance, anomalies=len(found), journal_seq=appended.seq,
    ), f"Z{z_no}", at)
    return body
