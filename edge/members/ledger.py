"""Points and stored-value ledgers: append-only entries, balances derived and cached.

A spend that the balance cannot cover raises `Insufficient` and writes nothing; the CHECK
constraints on `member_balance` are the second line of defence, so no code path can store a
negative balance.
"""

from __future__ import annotations

import datetime
import sqlite3
from typing import Literal

from edge.stock.ledger import Actor

Ledger = Literal["points", "value"]
_TABLES = {"points": "points_ledger", "value": "value_ledger"}
_COLUMNS = {"points": "points", "value": "balance"}


class Insufficient(Exception):
    def __init__(self, ledger: Ledger, available: int, wanted: int) -> None:
        super().__init__(f"{ledger}: {available} available, {wanted} wanted")
        self.ledger = ledger
        self.available = available
        self.wanted = wanted


def balances(conn: sqlite3.Connection, member_id: str) -> tuple[int, int]:
    """(points, stored value in fen) of a member."""
    row = conn.execute("SELECT points, balance FROM member_balance WHERE member_id = ?", (member_id,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def ledger_sum(conn: sqlite3.Connection, ledger: Ledger, member_id: str) -> int:
    row = conn.execute(
        f"SELECT coalesce(sum(delta), 0) FROM {_TABLES[ledger]} WHERE member_id = ?", (member_id,)
    ).fetchone()
    return int(row[0])


def post(
    conn: sqlite3.Connection,
    ledger: Ledger,
    member_id: str,
    delta: int,
    kind: str,
    ref: str | None,
    actor: Actor,
    at: str,
) -> int:
    """Append an entry; returns the new balance. Refuses to go below zero."""
    column = _COLUMNS[ledger]
    conn.execute("INSERT OR IGNORE INTO member_balance (member_id) VALUES (?)", (member_id,))
    current = int(conn.execute(f"SELECT {column} FROM member_balance WHERE member_id = ?", (member_id,)).fetchone()[0])
    if current + delta < 0:
        raise Insufficient(ledger, current, -delta)
    cursor = conn.execute(
        f"""INSERT INTO {_TABLES[ledger]} (member_id, delta, kind, ref, user_id, till_id, at)
            VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (member_id, delta, kind, ref, actor.user_id, actor.till_id, at),
    )
    conn.execute(f"UPDATE member_balance SET {column} = {column} + ? WHERE member_id = ?", (delta, member_id))
    if ledger == "points" and delta:
        _batches(conn, member_id, int(cursor.lastrowid or 0), delta, at)
    return current + delta


def valid_months(conn: sqlite3.Connection) -> int:
    """How long earned points stay valid (hub config points_valid_months, kept in settings; 0 = forever)."""
    row = conn.execute("SELECT value FROM settings WHERE key = 'points_valid_months'").fetchone()
    return int(row[0]) if row else 24


def expiry_date(earned_on: datetime.date, months: int) -> str | None:
    """The last day of the month `months` after `earned_on` (None when `months` is 0: never)."""
    if months <= 0:
        return None
    index = earned_on.year * 12 + earned_on.month - 1 + months + 1  # the month after the expiry month
    first_after = datetime.date(index // 12, index % 12 + 1, 1)
    return (first_after - datetime.timedelta(days=1)).isoformat()


def _batches(conn: sqlite3.Connection, member_id: str, entry_id: int, delta: int, at: str) -> None:
    """Keep `points_batches` in step: a credit is a new batch; a debit uses batches first-expiring-first
    (never-expiring last, then oldest first)."""
    if delta > 0:
        expires = expiry_date(datetime.date.fromisoformat(at[:10]), valid_months(conn))
        conn.execute("INSERT INTO points_batches (entry_id, member_id, earned, expires_on, remaining)"
                     " VALUES (?, ?, ?, ?, ?)", (entry_id, member_id, delta, expires, delta))
        return
    owed = -delta
    for batch_id, remaining in conn.execute(
            """SELECT entry_id, remaining FROM points_batches WHERE member_id = ? AND remaining > 0
               ORDER BY expires_on IS NULL, expires_on, entry_id""", (member_id,)).fetchall():
        take = min(owed, int(remaining))
        conn.execute("UPDATE points_batches SET remaining = remaining - ? WHERE entry_id = ?", (take, batch_id))
        owed -= take
        if owed == 0:
            break
