"""A member's rights over his personal data at the hub: every unmasked read audited, export, erase.

- Audit: each read that shows a member's phone unmasked (a manager's lookup, member page or list,
  an export) appends a `pii_audit` row: who, when, which member, which fields, through what (`api`,
  `tablet`). Masked reads (a cashier's 138****8000) are not personal-data reads and are not audited.
- Export: everything the hub holds about the member, as one JSON document.
- Erase: the member's phone, name, birthday, card and tags are removed (the sealed blob and the
  lookup hashes); the member id, ledgers and sales stay, pseudonymous. The journal keeps a tombstone
  (`member_erase`) and the outbox a `member_erased` delta, so HQ erases it too and tells every store
  (`apply_erased`, from the feed).
"""

from __future__ import annotations

import sqlite3
from typing import Literal

import msgspec

from edge.errors import ApiError
from edge.journal import chain
from edge.members import pii
from edge.outbox import queue as outbox
from edge.stock.ledger import Actor
from hq_sync.protocol import MemberDelta, MemberErasedDelta, delta_decoder, delta_encoder

Via = Literal["api", "tablet"]
PERSONAL_FIELDS = ("phone", "name", "birthday", "card_no")
ERASED_FIELDS = ("phone", "name", "birthday", "card_no", "tags")


class AuditRow(msgspec.Struct, frozen=True):
    audit_id: int
    at: str
    user_id: str | None
    till_id: str | None
    member_id: str
    fields: list[str]
    action: str  # read, export, erase
    via: str


class AuditPage(msgspec.Struct, frozen=True):
    entries: list[AuditRow]
    total: int


class ExportedEntry(msgspec.Struct, frozen=True):
    entry_id: int
    delta: int
    kind: str
    ref: str | None
    at: str


class ExportedBatch(msgspec.Struct, frozen=True):
    entry_id: int
    earned: int
    remaining: int
    expires_on: str | None


class ExportedLine(msgspec.Struct, frozen=True):
    line_no: int
    sku: str
    qty: int
    weight_g: int | None
    net: int


class ExportedReturn(msgspec.Struct, frozen=True):
    return_id: str
    refund_total: int
    points_reversed: int
    created_at: str


class ExportedSale(msgspec.Struct, frozen=True):
    sale_id: str
    receipt_no: str
    total: int
    discount: int
    points_earned: int
    created_at: str
    lines: list[ExportedLine]
    returns: list[ExportedReturn]


class ExportedTopup(msgspec.Struct, frozen=True):
    topup_id: str
    amount: int
    method: str
    created_at: str


class MemberExport(msgspec.Struct, frozen=True):
    """A member's data as this hub holds it (GET /api/v1/members/{id}/export)."""

    member_id: str
    phone: str | None
    name: str
    birthday: str | None
    card_no: str | None
    tier: str
    tags: list[str]
    home_store: str | None
    created_at: str
    erased_at: str | None
    points: int
    balance: int
    points_ledger: list[ExportedEntry]
    value_ledger: list[ExportedEntry]
    points_batches: list[ExportedBatch]
    topups: list[ExportedTopup]
    sales: list[ExportedSale]
    exported_at: str
    store_id: str


class EraseResult(msgspec.Struct, frozen=True):
    member_id: str
    erased_at: str
    fields: list[str]
    journal_seq: int
    journal_hash: str


# -- audit ----------------------------------------------------------------------------------------------------

def record_reads(conn: sqlite3.Connection, member_ids: list[str], fields: tuple[str, ...], action: str,
                 via: Via, actor: Actor, at: str) -> int:
    """Audit rows for reads of these members' unmasked personal data (in the writer)."""
    text = ",".join(fields)
    conn.executemany(
        "INSERT INTO pii_audit (at, user_id, till_id, member_id, fields, action, via) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(at, actor.user_id, actor.till_id, member_id, text, action, via) for member_id in member_ids])
    return len(member_ids)


def audit_page(conn: sqlite3.Connection, *, member_id: str | None = None, limit: int = 50,
               offset: int = 0) -> AuditPage:
    """Newest first; one member's when `member_id`."""
    where, args = (" WHERE member_id = ?", [member_id]) if member_id else ("", [])
    total = int(conn.execute("SELECT count(*) FROM pii_audit" + where, args).fetchone()[0])
    rows = conn.execute(
        "SELECT audit_id, at, user_id, till_id, member_id, fields, action, via FROM pii_audit" + where
        + " ORDER BY audit_id DESC LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
    return AuditPage([AuditRow(int(r[0]), r[1], r[2], r[3], r[4], [f for f in str(r[5]).split(",") if f], r[6], r[7])
                      for r in rows], total)


# -- export ---------------------------------------------------------------------------------------------------

def export(conn: sqlite3.Connection, member_id: str, store_id: str, at: str) -> MemberExport | None:
    row = conn.execute("""SELECT m.member_id, m.pii, m.tier, m.tags, m.home_store, m.created_at, m.erased_at,
                                 coalesce(b.points, 0), coalesce(b.balance, 0)
                          FROM members m LEFT JOIN member_balance b ON b.member_id = m.member_id
                          WHERE m.member_id = ?""", (member_id,)).fetchone()
    if row is None:
        return None
    p = pii.keys(conn).open_personal(row[0], row[1])

    def entries(table: str) -> list[ExportedEntry]:
        return [ExportedEntry(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in conn.execute(
            f"SELECT entry_id, delta, kind, ref, at FROM {table} WHERE member_id = ? ORDER BY entry_id", (member_id,))]

    sales = []
    for s in conn.execute("""SELECT sale_id, receipt_no, total, discount, points_earned, created_at FROM sales
                             WHERE member_id = ? ORDER BY created_at""", (member_id,)).fetchall():
        lines = [ExportedLine(int(r[0]), str(r[1]), int(r[2]), r[3], int(r[4])) for r in conn.execute(
            "SELECT line_no, sku, qty, weight_g, net FROM sale_lines WHERE sale_id = ? ORDER BY line_no", (s[0],))]
        returns = [ExportedReturn(str(r[0]), int(r[1]), int(r[2]), str(r[3])) for r in conn.execute(
            "SELECT return_id, refund_total, points_reversed, created_at FROM returns WHERE sale_id = ? "
            "ORDER BY created_at", (s[0],))]
        sales.append(ExportedSale(s[0], s[1], int(s[2]), int(s[3]), int(s[4]), s[5], lines, returns))
    return MemberExport(
        member_id=row[0], phone=p.phone, name=p.name, birthday=p.birthday, card_no=p.card_no, tier=row[2],
        tags=msgspec.json.decode(row[3], type=list[str]), home_store=row[4], created_at=row[5], erased_at=row[6],
        points=int(row[7]), balance=int(row[8]), points_ledger=entries("points_ledger"),
        value_ledger=entries("value_ledger"),
        points_batches=[ExportedBatch(int(r[0]), int(r[1]), int(r[2]), r[3]) for r in conn.execute(
            "SELECT entry_id, earned, remaining, expires_on FROM points_batches WHERE member_id = ? ORDER BY entry_id",
            (member_id,))],
        topups=[ExportedTopup(r[0], int(r[1]), r[2], r[3]) for r in conn.execute(
            "SELECT topup_id, amount, method, created_at FROM topups WHERE member_id = ? ORDER BY created_at",
            (member_id,))],
        sales=sales, exported_at=at, store_id=store_id)


# -- erase ----------------------------------------------------------------------------------------------------

def _wipe(conn: sqlite3.Connection, member_id: str, at: str) -> bool:
    """Remove the personal data of a members row, and from the outbox rows that carried the member's
    profile (a row not yet sent goes without it); False when there is no such member."""
    found = conn.execute(
        """UPDATE members SET pii = NULL, phone_hash = NULL, card_hash = NULL, phone_last4 = NULL, tags = '[]',
               erased_at = coalesce(erased_at, ?) WHERE member_id = ?""", (at, member_id)).rowcount > 0
    for seq, payload in conn.execute("SELECT seq, payload FROM outbox WHERE kind = 'member' AND ref = ?",
                                     (member_id,)).fetchall():
        delta = delta_decoder.decode(pii.open_payload(conn, "member", bytes(payload)))
        if isinstance(delta, MemberDelta):
            bare = MemberDelta(member_id=delta.member_id, tier=delta.tier, at=delta.at, home_store=delta.home_store)
            conn.execute("UPDATE outbox SET payload = ? WHERE seq = ?",
                         (pii.seal_payload(conn, "member", delta_encoder.encode(bare)), seq))
    return found


def erase(conn: sqlite3.Connection, member_id: str, actor: Actor, at: str, via: Via) -> EraseResult:
    """Erase on request at this hub (in the writer): the row keeps its id, tier and balances."""
    row = conn.execute("SELECT erased_at FROM members WHERE member_id = ?", (member_id,)).fetchone()
    if row is None:
        raise ApiError(404, "unknown_member", f"no member {member_id[:64]}")
    if row[0] is not None:
        raise ApiError(409, "already_erased", f"member {member_id[:64]} was erased at {row[0]}")
    _wipe(conn, member_id, at)
    fields = list(ERASED_FIELDS)
    appended = chain.append(conn, "member_erase", member_id, at, {
        "member_id": member_id, "fields": fields, "user_id": actor.user_id, "till_id": actor.till_id})
    outbox.append(conn, MemberErasedDelta(member_id=member_id, at=at, user_id=actor.user_id or "",
                                          journal_seq=appended.seq), member_id, at)
    record_reads(conn, [member_id], ERASED_FIELDS, "erase", via, actor, at)
    conn.execute("INSERT INTO audit (at, user_id, till_id, action, target) VALUES (?, ?, ?, 'member.erase', ?)",
                 (at, actor.user_id, actor.till_id, member_id))
    return EraseResult(member_id, at, fields, appended.seq, appended.hash)


def apply_erased(conn: sqlite3.Connection, member_id: str, at: str) -> bool:
    """HQ says the member was erased (a feed entry): erase the cached copy; no tombstone of our own."""
    return _wipe(conn, member_id, at)
