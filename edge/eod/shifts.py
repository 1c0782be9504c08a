"""Cashier shifts (交接班): open a shift at a till with a float, record pay-outs and safe drops, close it
with a counted amount; the shift report.

Attribution. A shift is bounded by its two journal records: `open_seq` (the `shift.open` record) and
`close_seq` (the `shift.close` record). Every sale, return and top-up appends its own journal record in
the transaction that commits it, through the hub's one writer, so a till's trade whose record lies
between the two belongs to the shift — exactly, with no column added to the sales tables, and at the
cost of the shift's range of the journal (a primary-key range). Returns belong to the till they were
made at (else the sold sale's till) and top-ups to theirs, as in the X report.

A till with no open shift still sells (a store must keep trading): that trade is in the day's X and Z
as before and in no shift. Pay-outs and drops need an open shift (they are the shift's cash).

The drawer of a shift is `edge.eod.cash.drawer`, the function the X and Z reports use.
"""

from __future__ import annotations

import sqlite3

import msgspec

from edge.eod import cash as drawers
from edge.eod.days import bounds
from edge.eod.models import TENDER_METHODS, Figures
from edge.eod.shift_models import (
    CashMove,
    DropRequest,
    MoveKind,
    PayoutRequest,
    Shift,
    ShiftCloseRequest,
    ShiftList,
    ShiftOpenRequest,
)
from edge.errors import ApiError
from edge.journal import chain
from edge.sales.checkout import Replay, replay_or_conflict
from edge.stock.ledger import Actor

encoder = msgspec.json.Encoder()
_shift_decoder = msgspec.json.Decoder(Shift)
_OPEN_END = 1 << 62  # an open shift's window has no upper journal bound yet


def _figures(conn: sqlite3.Connection, till_id: str, lo: int, hi: int) -> tuple[Figures, int]:
    """The till's trade whose journal records lie strictly between seq `lo` and `hi`; and the change given."""
    f = Figures(tenders=dict.fromkeys(TENDER_METHODS, 0), refunds={}, topups_by_method={})
    r = conn.execute(
        """SELECT count(*), coalesce(sum(s.subtotal), 0), coalesce(sum(s.discount), 0), coalesce(sum(s.total), 0),
                  coalesce(sum(s.tax), 0), coalesce(sum(s.change), 0)
           FROM journal j JOIN sales s ON s.sale_id = j.ref
           WHERE j.seq > ? AND j.seq < ? AND j.kind = 'sale' AND s.till_id = ?""", (lo, hi, till_id)).fetchone()
    f.tickets, f.gross, f.discount, f.net, f.tax = r[0], r[1], r[2], r[3], r[4]
    change = int(r[5])
    for r in conn.execute(
        """SELECT t.method, sum(t.amount) FROM journal j JOIN sales s ON s.sale_id = j.ref
           JOIN sale_tenders t ON t.sale_id = s.sale_id
           WHERE j.seq > ? AND j.seq < ? AND j.kind = 'sale' AND s.till_id = ? GROUP BY t.method""",
            (lo, hi, till_id)):
        if r[0] != "exchange":
            f.tenders[r[0]] = r[1]
    for r in conn.execute(
        """SELECT count(*), coalesce(sum(r.refund_total), 0) FROM journal j JOIN returns r ON r.return_id = j.ref
           JOIN sales s ON s.sale_id = r.sale_id
           WHERE j.seq > ? AND j.seq < ? AND j.kind = 'return' AND coalesce(r.till_id, s.till_id) = ?""",
            (lo, hi, till_id)):
        f.returns, f.refunded = r[0], r[1]
    for r in conn.execute(
        """SELECT rf.method, count(DISTINCT r.return_id), sum(rf.amount) FROM journal j
           JOIN returns r ON r.return_id = j.ref JOIN sales s ON s.sale_id = r.sale_id
           JOIN return_refunds rf ON rf.return_id = r.return_id
           WHERE j.seq > ? AND j.seq < ? AND j.kind = 'return' AND coalesce(r.till_id, s.till_id) = ?
           GROUP BY rf.method""", (lo, hi, till_id)):
        if r[0] == "exchange":
            f.exchanges, f.exchange_credit = r[1], r[2]
        else:
            f.refunds[r[0]] = r[2]
    for r in conn.execute(
        """SELECT t.method, count(*), sum(t.amount) FROM journal j JOIN topups t ON t.topup_id = j.ref
           WHERE j.seq > ? AND j.seq < ? AND j.kind = 'topup' AND t.till_id = ? GROUP BY t.method""",
            (lo, hi, till_id)):
        f.topups += r[1]
        f.topped_up += r[2]
        f.topups_by_method[r[0]] = r[2]
    return f, change


def _moves(conn: sqlite3.Connection, shift_id: str) -> list[CashMove]:
    return [CashMove(move_id=r[0], kind=r[1], shift_id=shift_id, till_id=r[2], amount=r[3], reason=r[4],
                     user_id=r[5], at=r[6], journal_seq=r[7])
            for r in conn.execute(
                """SELECT move_id, kind, till_id, amount, reason, user_id, created_at, journal_seq FROM cash_moves
                   WHERE shift_id = ? ORDER BY journal_seq""", (shift_id,))]


def _live(conn: sqlite3.Connection, row: sqlite3.Row, as_of: str) -> Shift:
    """An open shift's report as of now (also the report a close freezes)."""
    figures, change = _figures(conn, row["till_id"], row["open_seq"], _OPEN_END)
    moves = _moves(conn, row["shift_id"])
    payouts = [m for m in moves if m.kind == "payout"]
    drops = [m for m in moves if m.kind == "drop"]
    figures.cash = drawers.drawer_of(figures, row["opening_float"], change, sum(m.amount for m in payouts),
                                     sum(m.amount for m in drops))
    return Shift(shift_id=row["shift_id"], till_id=row["till_id"], user_id=row["user_id"], status="open",
                 opened_at=row["opened_at"], opening_float=row["opening_float"], open_seq=row["open_seq"],
                 as_of=as_of, figures=figures, payouts=payouts, drops=drops)


def _row(conn: sqlite3.Connection, shift_id: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM shifts WHERE shift_id = ?", (shift_id,)).fetchone()
    if row is None:
        raise ApiError(404, "unknown_shift", f"no shift {shift_id[:64]}")
    return row  # type: ignore[no-any-return]


def _report(conn: sqlite3.Connection, row: sqlite3.Row, as_of: str) -> Shift:
    if row["report"] is not None:
        return _shift_decoder.decode(row["report"])
    return _live(conn, row, as_of)


def _check_owner(row: sqlite3.Row, actor: Actor, manager: bool) -> None:
    """A cashier works only in his own shift; a manager in any."""
    if not manager and row["user_id"] != actor.user_id:
        raise ApiError(403, "not_your_shift", f"shift {row['shift_id']} at till {row['till_id']} is another "
                                              "cashier's; a manager may close it")


# -- reads ---------------------------------------------------------------------------------------------------

def get(conn: sqlite3.Connection, shift_id: str, as_of: str, only_till: str | None) -> Shift:
    row = _row(conn, shift_id)
    if only_till is not None and row["till_id"] != only_till:
        raise ApiError(403, "till_mismatch", f"shift {shift_id} is at till {row['till_id']}, not {only_till}")
    return _report(conn, row, as_of)


def open_shift_of(conn: sqlite3.Connection, till_id: str) -> str | None:
    row = conn.execute("SELECT shift_id FROM shifts WHERE till_id = ? AND closed_at IS NULL", (till_id,)).fetchone()
    return None if row is None else str(row[0])


def listing(conn: sqlite3.Connection, as_of: str, *, day: str | None, till_id: str | None, status: str | None,
            limit: int, offset: int) -> ShiftList:
    where, args = ["1 = 1"], []
    if day is not None:
        lo, hi = bounds(day)
        where.append("opened_at >= ? AND opened_at < ?")
        args += [lo, hi]
    if till_id is not None:
        where.append("till_id = ?")
        args.append(till_id)
    if status == "open":
        where.append("closed_at IS NULL")
    elif status == "closed":
        where.append("closed_at IS NOT NULL")
    clause = " AND ".join(where)
    total = int(conn.execute(f"SELECT count(*) FROM shifts WHERE {clause}", args).fetchone()[0])
    rows = conn.execute(f"SELECT * FROM shifts WHERE {clause} ORDER BY open_seq DESC LIMIT ? OFFSET ?",
                        [*args, limit, offset]).fetchall()
    return ShiftList(shifts=[_report(conn, r, as_of) for r in rows], total=total)


# -- writes (inside the writer's transaction) ----------------------------------------------------------------

def open_shift(conn: sqlite3.Connection, req: ShiftOpenRequest, digest: str, default_float: int, actor: Actor,
               at: str) -> Replay | bytes:
    shift_id = str(req.shift_id)
    replay = replay_or_conflict(conn, "shifts", "shift_id", shift_id, digest)
    if replay is not None:
        return replay
    already = open_shift_of(conn, req.till_id)
    if already is not None:
        raise ApiError(409, "shift_open", f"till {req.till_id} already has an open shift {already}; close it first",
                       shift_id=already)
    opening = default_float if req.opening_float is None else req.opening_float
    appended = chain.append(conn, "shift.open", shift_id, at, {
        "till_id": req.till_id, "user_id": actor.user_id, "opening_float": opening})
    figures = Figures(tenders=dict.fromkeys(TENDER_METHODS, 0), refunds={}, topups_by_method={})
    figures.cash = drawers.drawer_of(figures, opening, 0)
    shift = Shift(shift_id=shift_id, till_id=req.till_id, user_id=actor.user_id, status="open", opened_at=at,
                  opening_float=opening, open_seq=appended.seq, as_of=at, figures=figures)
    body = encoder.encode(shift)
    conn.execute(
        """INSERT INTO shifts (shift_id, till_id, user_id, opening_float, opened_at, open_seq, request_hash, response)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        (shift_id, req.till_id, actor.user_id, opening, at, appended.seq, digest, body))
    return body


def record_move(conn: sqlite3.Connection, shift_id: str, kind: MoveKind, req: PayoutRequest | DropRequest,
                digest: str, actor: Actor, manager: bool, at: str) -> Replay | bytes:
    """A pay-out or a safe drop out of an open shift's drawer; never more than the drawer holds."""
    move_id = str(req.payout_id if isinstance(req, PayoutRequest) else req.drop_id)
    replay = replay_or_conflict(conn, "cash_moves", "move_id", move_id, digest)
    if replay is not None:
        return replay
    row = _row(conn, shift_id)
    _check_owner(row, actor, manager)
    if row["closed_at"] is not None:
        raise ApiError(409, "shift_closed", f"shift {shift_id} was closed at {row['closed_at']}")
    expected = _live(conn, row, at).figures.cash.expected
    if req.amount > expected:
        raise ApiError(422, "drawer_short", f"the drawer should hold {expected}, less than {req.amount}",
                       expected=expected)
    appended = chain.append(conn, f"cash.{kind}", move_id, at, {
        "shift_id": shift_id, "till_id": row["till_id"], "amount": req.amount, "reason": req.reason,
        "user_id": actor.user_id})
    move = CashMove(move_id=move_id, kind=kind, shift_id=shift_id, till_id=row["till_id"], amount=req.amount,
                    reason=req.reason, user_id=actor.user_id, at=at, journal_seq=appended.seq)
    body = encoder.encode(move)
    conn.execute(
        """INSERT INTO cash_moves (move_id, kind, shift_id, till_id, amount, reason, user_id, request_hash, response,
               journal_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (move_id, kind, shift_id, row["till_id"], req.amount, req.reason, actor.user_id, digest, body, appended.seq,
         at))
    return body


def journal_record(shift: Shift) -> dict[str, object]:
    """What the close's journal record holds: the frozen report without the record's own seq and hash."""
    record: dict[str, object] = msgspec.to_builtins(shift)
    del record["close_seq"], record["journal_hash"]
    return record


def close_shift(conn: sqlite3.Connection, shift_id: str, req: ShiftCloseRequest, digest: str, actor: Actor,
                manager: bool, at: str) -> Replay | bytes:
    """Freeze the shift's report with the counted cash, journal it; the same close again answers it again."""
    row = _row(conn, shift_id)
    if row["closed_at"] is not None:
        if row["close_hash"] == digest:
            return Replay(bytes(row["report"]))
        raise ApiError(409, "shift_closed", f"shift {shift_id} was already closed at {row['closed_at']}")
    _check_owner(row, actor, manager)
    drawers.check_denomination_total(req.denominations, req.counted)
    shift = _live(conn, row, at)
    shift.status, shift.closed_at, shift.closed_by = "closed", at, actor.user_id
    shift.counted, shift.variance = req.counted, req.counted - shift.figures.cash.expected
    shift.denominations = dict(sorted(req.denominations.items(), key=lambda kv: -int(kv[0]))) \
        if req.denominations is not None else None
    shift.note = req.note
    appended = chain.append(conn, "shift.close", shift_id, at, journal_record(shift))
    shift.close_seq, shift.journal_hash = appended.seq, appended.hash
    body = encoder.encode(shift)
    conn.execute(
        """UPDATE shifts SET closed_at = ?, closed_by = ?, close_seq = ?, counted = ?, expected = ?, variance = ?,
               close_hash = ?, report = ? WHERE shift_id = ?""",
        (at, actor.user_id, appended.seq, req.counted, shift.figures.cash.expected, shift.variance, digest, body,
         shift_id))
    return body


def decode(body: bytes) -> Shift:
    return _shift_decoder.decode(body)
