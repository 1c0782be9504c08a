"""Members at HQ: the authoritative balances, and escrow — grants, online authorisations, reclaims."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from hq_sync.server.service.access import Principal, require, require_store, scope_sql
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import (
    AuthorizeRequest,
    EscrowGrant,
    EscrowReclaim,
    Ledger,
    MemberRow,
    MembersPut,
)


def member_rows(tx: Tx, member_id: str | None) -> list[MemberRow]:
    sql = "SELECT member_id, tier, phone, card_no, name, birthday, tags, home_store, created_at FROM hq_members"
    rows = tx.all(sql + " WHERE member_id = ?", (member_id,)) if member_id else tx.all(sql + " ORDER BY member_id")
    return [MemberRow(r[0], r[1], r[2], r[3], r[4], r[5], msgspec.json.decode(r[6], type=list[str]), r[7], r[8])
            for r in rows]


# -- members and escrow -----------------------------------------------------------------------------------------

def member_view(db: HqDb, principal: Principal, member_id: str) -> dict[str, Any]:
    """The member's chain-wide balance and points; the escrow per store only for the stores in the
    principal's scope (the unallocated part stays chain-wide)."""
    require(principal, "members.read")
    where, args = scope_sql(principal)
    with db.read() as tx:
        row = tx.one("SELECT member_id, tier, balance, points, home_store FROM hq_members WHERE member_id = ?",
                     (member_id,))
        if row is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        allocated = {str(r[0]): int(r[1]) for r in tx.all(
            "SELECT ledger, coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? GROUP BY ledger",
            (member_id,))}
        escrow = tx.all(f"SELECT store_id, ledger, outstanding FROM hq_escrow WHERE member_id = ? AND outstanding > 0 "
                        f"AND {where} ORDER BY store_id, ledger", [member_id, *args])
    held: dict[str, dict[str, int]] = {}
    for store_id, ledger, outstanding in escrow:
        held.setdefault(store_id, {"value": 0, "points": 0})[ledger] = int(outstanding)
    allocated_value = allocated.get("value", 0)
    allocated_points = allocated.get("points", 0)
    return {"member_id": row[0], "tier": row[1], "balance": int(row[2]), "points": int(row[3]),
            "home_store": row[4], "escrow": held, "unallocated_balance": int(row[2]) - allocated_value,
            "unallocated_points": int(row[3]) - allocated_points}


def _unallocated(tx: Tx, member_id: str, ledger: str) -> int | None:
    row = tx.one("SELECT balance, points FROM hq_members WHERE member_id = ?", (member_id,))
    if row is None:
        return None
    total = int(row[0] if ledger == "value" else row[1])
    held = tx.one("SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? AND ledger = ?",
                  (member_id, ledger))
    return total - int(held[0] if held else 0)


def _grant(tx: Tx, private_key: bytes, member_id: str, store_id: str, ledger: Ledger, amount: int,
           request_id: str | None, at: str) -> EscrowGrant:
    grant = EscrowGrant(grant_id=f"G-{uuid.uuid4()}", member_id=member_id, ledger=ledger, amount=amount)
    tx.run("""INSERT INTO hq_grants (grant_id, request_id, member_id, store_id, ledger, amount, at)
              VALUES (?, ?, ?, ?, ?, ?, ?)""", (grant.grant_id, request_id, member_id, store_id, ledger, amount, at))
    tx.run("""INSERT INTO hq_escrow (member_id, store_id, ledger, outstanding) VALUES (?, ?, ?, ?)
              ON CONFLICT (member_id, store_id, ledger) DO UPDATE SET outstanding = hq_escrow.outstanding + ?""",
           (member_id, store_id, ledger, amount, amount))
    # The grant also goes down the feed: if the answer to the hub is lost, the feed still brings it.
    append_feed(tx, private_key, store_id, grant, at)
    return grant


def grant(db: HqDb, principal: Principal, private_key: bytes, member_id: str, store_id: str, ledger: Ledger,
          amount: int, at: str) -> EscrowGrant:
    """HQ sets aside `amount` of the member's unallocated balance (or points) for a store."""
    require(principal, "members.escrow")
    if amount <= 0:
        raise HqError(422, "bad_amount", "a grant is a positive amount")
    with db.write() as tx:
        require_store(tx, principal, store_id)
        tx.lock("hq_members", "member_id", [member_id])
        if tx.one("SELECT 1 FROM hq_stores WHERE store_id = ? AND public_key IS NOT NULL", (store_id,)) is None:
            raise HqError(404, "unknown_store", f"no paired store {store_id[:64]}")
        free = _unallocated(tx, member_id, ledger)
        if free is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        if free < amount:
            raise HqError(402, "insufficient_balance", f"member {member_id} has {free} unallocated", available=free)
        members = member_rows(tx, member_id)
        append_feed(tx, private_key, store_id, MembersPut(members=members), at)  # the store may not know them yet
        given = _grant(tx, private_key, member_id, store_id, ledger, amount, None, at)
        audit(tx, principal, "member.escrow_grant", f"member:{member_id}", {"unallocated": free, "ledger": ledger},
              {"store_id": store_id, "amount": amount, "grant_id": given.grant_id}, at=at)
        return given


def authorize(db: HqDb, private_key: bytes, store_id: str, req: AuthorizeRequest, at: str) -> EscrowGrant:
    """An online spend at a store: grant the store what it lacks, out of the member's unallocated
    balance, or refuse (402) and ask the other stores holding escrow for the member to give it back."""
    if req.amount <= 0:
        raise HqError(422, "bad_amount", "amount must be positive")
    with db.write() as tx:
        tx.lock("hq_members", "member_id", [req.member_id])
        prior = tx.one("SELECT grant_id, member_id, ledger, amount, store_id FROM hq_grants WHERE request_id = ?",
                       (f"{store_id}:{req.request_id}",))
        if prior is not None:
            return EscrowGrant(grant_id=prior[0], member_id=prior[1], ledger=prior[2], amount=int(prior[3]))
        free = _unallocated(tx, req.member_id, req.ledger)
        if free is None:
            raise HqError(404, "unknown_member", f"no member {req.member_id[:64]}")
        if free >= req.amount:
            return _grant(tx, private_key, req.member_id, store_id, req.ledger, req.amount,
                          f"{store_id}:{req.request_id}", at)
        _reclaim(tx, private_key, req.member_id, req.ledger, req.amount - max(free, 0), exclude=store_id, at=at)
    raise HqError(402, "insufficient_balance" if req.ledger == "value" else "insufficient_points",
                  f"member {req.member_id} has {max(free, 0)} unallocated; reclaiming escrow from other stores",
                  available=max(free, 0))


def _reclaim(tx: Tx, private_key: bytes, member_id: str, ledger: str, wanted: int, exclude: str | None,
             at: str) -> int:
    """Ask stores holding escrow for this member to give back up to `wanted` (one open request per store)."""
    asked = 0
    for store_id, outstanding in tx.all(
            """SELECT store_id, outstanding FROM hq_escrow WHERE member_id = ? AND ledger = ? AND outstanding > 0
               ORDER BY outstanding DESC, store_id""", (member_id, ledger)):
        if asked >= wanted or store_id == exclude:
            continue
        if tx.one("SELECT 1 FROM hq_reclaims WHERE member_id = ? AND store_id = ? AND ledger = ? AND released IS NULL",
                  (member_id, store_id, ledger)) is not None:
            asked += int(outstanding)
            continue
        amount = min(int(outstanding), wanted - asked)
        request_id = f"R-{uuid.uuid4()}"
        tx.run("""INSERT INTO hq_reclaims (request_id, member_id, store_id, ledger, amount, at)
                  VALUES (?, ?, ?, ?, ?, ?)""",
               (request_id, member_id, store_id, ledger, amount, at))
        append_feed(tx, private_key, store_id, EscrowReclaim(request_id=request_id, member_id=member_id,
                                                             ledger=ledger, amount=amount), at)  # type: ignore[arg-type]
        asked += amount
    return asked


def reclaim(db: HqDb, principal: Principal, private_key: bytes, member_id: str, ledger: str, amount: int | None,
            at: str) -> int:
    """Admin: take escrow back from every store (all of it unless `amount`)."""
    require(principal, "members.reclaim")
    with db.write() as tx:
        tx.lock("hq_members", "member_id", [member_id])
        held = tx.one("SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? AND ledger = ?",
                      (member_id, ledger))
        everything = int(held[0] or 0) if held else 0
        asked = _reclaim(tx, private_key, member_id, ledger, amount if amount is not None else everything,
                         exclude=None, at=at)
        audit(tx, principal, "member.escrow_reclaim", f"member:{member_id}", {"held": everything, "ledger": ledger},
              {"asked": asked}, at=at)
        return asked
