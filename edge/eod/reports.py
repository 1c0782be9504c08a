"""The day's figures per till and for the store (the X report's numbers), from the day's sales,
returns and top-ups. Every query selects the day by an index range on created_at, so a report
costs the day's rows whatever the history holds.

Attribution: a sale to its till; a return to the till it was made at (else the sold sale's till);
a top-up to its till (None when booked from the tablet without one). Exchange credit moves between
a return and a sale inside the store and is neither a tender nor a refund here.
"""

from __future__ import annotations

import sqlite3

from edge.eod import cash as drawers
from edge.eod.days import bounds
from edge.eod.models import TENDER_METHODS, CashCount, Figures, TillFigures, XReport


def _till(figures: dict[str | None, TillFigures], till_id: str | None) -> TillFigures:
    found = figures.get(till_id)
    if found is None:
        found = figures[till_id] = TillFigures(till_id=till_id, tenders=dict.fromkeys(TENDER_METHODS, 0),
                                               refunds={}, topups_by_method={})
    return found


def till_figures(conn: sqlite3.Connection, day: str, floats: dict[str, int], default_float: int,
                 counts: dict[str, CashCount], only_till: str | None = None) -> list[TillFigures]:
    """One TillFigures per till with any business (or a float or count) on the day, sorted by till."""
    lo, hi = bounds(day)
    figures: dict[str | None, TillFigures] = {}
    for r in conn.execute(
        """SELECT till_id, count(*), sum(subtotal), sum(discount), sum(total), sum(tax), sum(change)
           FROM sales WHERE created_at >= ? AND created_at < ? GROUP BY till_id""", (lo, hi)):
        f = _till(figures, r[0])
        f.tickets, f.gross, f.discount, f.net, f.tax, f.cash.change = r[1], r[2], r[3], r[4], r[5], r[6]
    for r in conn.execute(
        """SELECT s.till_id, t.method, sum(t.amount) FROM sales s JOIN sale_tenders t ON t.sale_id = s.sale_id
           WHERE s.created_at >= ? AND s.created_at < ? GROUP BY s.till_id, t.method""", (lo, hi)):
        if r[1] != "exchange":
            _till(figures, r[0]).tenders[r[1]] = r[2]
    for r in conn.execute(
        """SELECT coalesce(r.till_id, s.till_id), count(*), sum(r.refund_total) FROM returns r
           JOIN sales s ON s.sale_id = r.sale_id
           WHERE r.created_at >= ? AND r.created_at < ? GROUP BY 1""", (lo, hi)):
        f = _till(figures, r[0])
        f.returns, f.refunded = r[1], r[2]
    for r in conn.execute(
        """SELECT coalesce(r.till_id, s.till_id), f.method, count(DISTINCT r.return_id), sum(f.amount)
           FROM returns r JOIN sales s ON s.sale_id = r.sale_id JOIN return_refunds f ON f.return_id = r.return_id
           WHERE r.created_at >= ? AND r.created_at < ? GROUP BY 1, 2""", (lo, hi)):
        f = _till(figures, r[0])
        if r[1] == "exchange":
            f.exchanges, f.exchange_credit = r[2], r[3]
        else:
            f.refunds[r[1]] = r[3]
    for r in conn.execute(
        """SELECT till_id, method, count(*), sum(amount) FROM topups
           WHERE created_at >= ? AND created_at < ? GROUP BY till_id, method""", (lo, hi)):
        f = _till(figures, r[0])
        f.topups += r[2]
        f.topped_up += r[3]
        f.topups_by_method[r[1]] = r[3]
    moves = drawers.cash_moves(conn, day)
    for extra in (*floats, *counts, *(t for t, _ in moves), *([only_till] if only_till is not None else [])):
        _till(figures, extra)
    out = []
    for till_id, f in figures.items():
        if only_till is not None and till_id != only_till:
            continue
        opening = floats.get(till_id, default_float) if till_id is not None else 0
        f.cash = drawers.drawer_of(f, opening, f.cash.change, moves.get((till_id or "", "payout"), 0),
                                   moves.get((till_id or "", "drop"), 0))
        f.count = counts.get(till_id) if till_id is not None else None
        out.append(f)
    return sorted(out, key=lambda f: (f.till_id is None, f.till_id or ""))


def store_figures(tills: list[TillFigures]) -> Figures:
    """The store: the sum of its tills."""
    total = Figures(tenders=dict.fromkeys(TENDER_METHODS, 0), refunds={}, topups_by_method={})
    for f in tills:
        for name in ("tickets", "gross", "discount", "net", "tax", "returns", "refunded", "exchanges",
                     "exchange_credit", "topups", "topped_up"):
            setattr(total, name, getattr(total, name) + getattr(f, name))
        for into, part in ((total.refunds, f.refunds), (total.tenders, f.tenders),
                           (total.topups_by_method, f.topups_by_method)):
            for method, amount in part.items():
                into[method] = into.get(method, 0) + amount
        for name in ("opening_float", "tendered", "change", "refunds", "topups", "payouts", "drops", "expected"):
            setattr(total.cash, name, getattr(total.cash, name) + getattr(f.cash, name))
    return total


def x_report(conn: sqlite3.Connection, day: str, as_of: str, default_float: int,
             only_till: str | None = None) -> XReport:
    """The day so far, computed now. Read it inside one read transaction for a consistent picture."""
    tills = till_figures(conn, day, drawers.floats(conn, day), default_float, drawers.latest_counts(conn, day),
                         only_till)
    return XReport(day=day, as_of=as_of, store=None if only_till is not None else store_figures(tills), tills=tills)


def expected_cash(conn: sqlite3.Connection, day: str, till_id: str, default_float: int) -> int:
    return till_figures(conn, day, drawers.floats(conn, day), default_float, {}, till_id)[0].cash.expected
