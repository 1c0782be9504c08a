"""The member directory for the tablet: bounded, read-only searches and one member's histories.

Every query is an index range with a LIMIT (members by the unique keyed hashes of phone and card,
by id, and by the last four digits of the phone; ledgers by member; sales by the `sales_member`
index). Personal data is unsealed here (edge/members/pii.py); phones are masked here, not in the
page, for readers without `members.phone`, and the caller audits unmasked reads.
"""

from __future__ import annotations

import re
import sqlite3

import msgspec

from edge.members import pii
from edge.members.ledger import Ledger
from edge.members.models import PointsExpiring, mask_phone

SEARCH_LIMIT = 50
_LAST4 = re.compile(r"^[0-9]{4}$")
_LEDGER_TABLES: dict[Ledger, str] = {"points": "points_ledger", "value": "value_ledger"}


class MemberRow(msgspec.Struct, frozen=True):
    member_id: str
    name: str
    phone: str | None
    card_no: str | None
    tier: str
    tier_name: str
    tier_name_en: str
    points: int
    balance: int
    created_at: str


class LedgerEntry(msgspec.Struct, frozen=True):
    entry_id: int
    delta: int
    kind: str
    ref: str | None
    user_id: str | None
    till_id: str | None
    at: str


class MemberSale(msgspec.Struct, frozen=True):
    sale_id: str
    receipt_no: str
    till_id: str
    total: int
    discount: int
    points_earned: int
    created_at: str


_ROW_SQL = """
SELECT m.member_id, m.pii, m.tier, t.name_zh, t.name_en,
       coalesce(b.points, 0), coalesce(b.balance, 0), m.created_at
FROM members m JOIN tiers t ON t.tier = m.tier LEFT JOIN member_balance b ON b.member_id = m.member_id
"""


def _rows(conn: sqlite3.Connection, cursor: sqlite3.Cursor, show_phone: bool) -> list[MemberRow]:
    k = pii.keys(conn)
    out = []
    for r in cursor:
        p = k.open_personal(r[0], r[1])
        out.append(MemberRow(member_id=r[0], name=p.name, phone=p.phone if show_phone else mask_phone(p.phone),
                             card_no=p.card_no, tier=r[2], tier_name=r[3], tier_name_en=r[4], points=int(r[5]),
                             balance=int(r[6]), created_at=r[7]))
    return out


def normalise_query(text: str) -> str:
    """What the reader typed, without spaces and dashes (phones are written 138 0013 8000)."""
    return re.sub(r"[\s\-]", "", text)[:40]


def search(conn: sqlite3.Connection, query: str, *, show_phone: bool, limit: int = SEARCH_LIMIT) -> list[MemberRow]:
    """Members whose member id, card number or phone is `query`, or whose phone ends in it when it is
    four digits. Exact matches come first."""
    q = normalise_query(query)
    if not q:
        return []
    k = pii.keys(conn)
    exact = _rows(conn, conn.execute(
        _ROW_SQL + " WHERE m.member_id = ? OR m.member_id = ? OR m.card_hash = ? OR m.phone_hash = ? LIMIT ?",
        (q, q.upper(), k.card_hash(q), k.phone_hash(q), limit)), show_phone)
    if not _LAST4.match(q):
        return exact
    seen = {row.member_id for row in exact}
    tail = _rows(conn, conn.execute(
        _ROW_SQL + " WHERE m.phone_last4 = ? ORDER BY m.member_id LIMIT ?", (q, limit)), show_phone)
    return (exact + [row for row in tail if row.member_id not in seen])[:limit]


def newest(conn: sqlite3.Connection, *, show_phone: bool, limit: int, offset: int) -> tuple[list[MemberRow], int]:
    """A page of members, newest first, and how many there are."""
    total = int(conn.execute("SELECT count(*) FROM members").fetchone()[0])
    rows = _rows(conn, conn.execute(_ROW_SQL + " ORDER BY m.rowid DESC LIMIT ? OFFSET ?",
                              (limit, offset)), show_phone)
    return rows, total


_TAGGED = """ WHERE EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)
                 OR EXISTS (SELECT 1 FROM json_each(m.auto_tags) WHERE value = ?)"""


def tagged(conn: sqlite3.Connection, tag: str, *, show_phone: bool, limit: int,
           offset: int) -> tuple[list[MemberRow], int]:
    """A page of the members carrying `tag`, manual or automatic, newest first, and how many there are
    (one pass over the members table: a store's cache, not the chain's history)."""
    total = int(conn.execute("SELECT count(*) FROM members m" + _TAGGED, (tag, tag)).fetchone()[0])
    rows = _rows(conn, conn.execute(_ROW_SQL + _TAGGED + " ORDER BY m.rowid DESC LIMIT ? OFFSET ?",
                              (tag, tag, limit, offset)), show_phone)
    return rows, total


def home_store(conn: sqlite3.Connection, member_id: str) -> str | None:
    row = conn.execute("SELECT home_store FROM members WHERE member_id = ?", (member_id,)).fetchone()
    return str(row[0]) if row and row[0] else None


def erased_at(conn: sqlite3.Connection, member_id: str) -> str | None:
    row = conn.execute("SELECT erased_at FROM members WHERE member_id = ?", (member_id,)).fetchone()
    return str(row[0]) if row and row[0] else None


def history(conn: sqlite3.Connection, ledger: Ledger, member_id: str, *, limit: int,
            offset: int) -> tuple[list[LedgerEntry], int]:
    """A page of a member's points or stored-value entries, newest first, and how many there are."""
    table = _LEDGER_TABLES[ledger]
    total = int(conn.execute(f"SELECT count(*) FROM {table} WHERE member_id = ?", (member_id,)).fetchone()[0])
    rows = conn.execute(
        f"""SELECT entry_id, delta, kind, ref, user_id, till_id, at FROM {table} WHERE member_id = ?
            ORDER BY entry_id DESC LIMIT ? OFFSET ?""", (member_id, limit, offset)).fetchall()
    return [LedgerEntry(*r) for r in rows], total


def expiring(conn: sqlite3.Connection, member_id: str, *, limit: int = 6) -> list[PointsExpiring]:
    """The member's points still to expire, grouped by expiry date, soonest first."""
    return [PointsExpiring(int(r[1]), str(r[0])) for r in conn.execute(
        """SELECT expires_on, sum(remaining) FROM points_batches
           WHERE member_id = ? AND remaining > 0 AND expires_on IS NOT NULL
           GROUP BY expires_on ORDER BY expires_on LIMIT ?""", (member_id, limit))]


def recent_sales(conn: sqlite3.Connection, member_id: str, *, limit: int = 10) -> list[MemberSale]:
    rows = conn.execute(
        """SELECT sale_id, receipt_no, till_id, total, discount, points_earned, created_at FROM sales
           WHERE member_id = ? ORDER BY created_at DESC LIMIT ?""", (member_id, limit)).fetchall()
    return [MemberSale(*r) for r in rows]
