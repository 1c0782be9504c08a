"""Points and stored-value ledgers: append-only entries, balances derived and cached.

A spend that the balance cannot cover raises `Insufficient` and writes nothing; the CHECK
constraints on `member_balance` are the second line of defence, so no code path can store a
negative balance.
"""

from __future__ import annotations

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
    conn.execute(
        f"""INSERT INTO {_TABLES[ledger]} (member_id, delta, kind, ref, user_id, till_id, at)
            VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (member_id, delta, kind, ref, actor.user_id, actor.till_id, at),
    )
    conn.execute(f"UPDATE member_balance SET {column} = {column} + ? WHERE member_id = ?", (delta, member_id))
    return current + delta
