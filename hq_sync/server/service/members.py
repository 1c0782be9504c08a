"""Members at HQ: the authoritative balances, and escrow — grants, online authorisations, reclaims.

An online authorisation meets the tender in one attempt (docs/sync.md): out of the unallocated
balance, else by asking the other stores that hold escrow for it back and waiting a bounded time for
their releases (`ReleaseSignal` in `escrow.py` wakes it), then granting. It refuses
`insufficient_balance` / `insufficient_points` only when the chain-wide holdings are short, and
`held_elsewhere` when the money exists but a store holding it did not release in time.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from hq_sync.server.service.escrow import ReleaseSignal


def member_rows(tx: Tx, member_id: str | None) -> list[MemberRow]:
    sql = """SELECT m.member_id, m.tier, m.phone, m.card_no, m.name, m.birthday, m.tags, m.home_store, m.created_at,
                    s.auto_tags FROM hq_members m LEFT JOIN hq_member_status s ON s.member_id = m.member_id"""
    rows = tx.all(sql + " WHERE m.member_id = ?", (member_id,)) if member_id else tx.all(sql + " ORDER BY m.member_id")
    return [MemberRow(r[0], r[1], r[2], r[3], r[4], r[5], msgspec.json.decode(r[6], type=list[str]), r[7], r[8],
                      msgspec.json.decode(r[9] or "[]", type=list[str]))
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
        status = tx.one("SELECT tier_review_on, auto_tags FROM hq_member_status WHERE member_id = ?", (member_id,))
        tier_history = tx.all("""SELECT from_tier, to_tier, at, reason FROM hq_member_tier_changes WHERE member_id = ?
                                 ORDER BY change_id DESC LIMIT 20""", (member_id,))
    held: dict[str, dict[str, int]] = {}
    for store_id, ledger, outstanding in escrow:
        held.setdefault(store_id, {"value": 0, "points": 0})[ledger] = int(outstanding)
    allocated_value = allocated.get("value", 0)
    allocated_points = allocated.get("points", 0)
    return {"member_id": row[0], "tier": row[1], "balance": int(row[2]), "points": int(row[3]),
            "home_store": row[4], "escrow": held, "unallocated_balance": int(row[2]) - allocated_value,
            "unallocated_points": int(row[3]) - allocated_points,
            # docs/members.md: automatic tags, the day a downgrade may happen, tier changes newest first
            "auto_tags": msgspec.json.decode(status[1], type=list[str]) if status else [],
            "tier_review_on": status[0] if status else None,
            "tier_history": [{"from_tier": r[0], "to_tier": r[1], "at": r[2], "reason": r[3]} for r in tier_history]}


def _unallocated(tx: Tx, member_id: str, ledger: str) -> int | None:
    row = tx.one("SELECT balance, points FROM hq_members WHERE member_id = ?", (member_id,))
    if row is None:
        return None
    total = int(row[0] if ledger == "value" else row[1])
    held = tx.one("SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? AND ledger = ?",
                  (member_id, ledger))
    return total - int(held[0] if held else 0)


def touch_in(tx: Tx, member_id: str, store_id: str, now_s: int) -> None:
    """The member's escrow at this store was used (a spend, a grant) now: it is not idle."""
    tx.run("""INSERT INTO hq_escrow_activity (member_id, store_id, used_s) VALUES (?, ?, ?)
              ON CONFLICT (member_id, store_id) DO UPDATE SET used_s = excluded.used_s""",
           (member_id, store_id, now_s))


def grant_in(tx: Tx, private_key: bytes, member_id: str, store_id: str, ledger: Ledger, amount: int,
             request_id: str | None, at: str, now_s: int | None = None) -> EscrowGrant:
    """A grant inside the caller's transaction (the caller locked the member and checked the unallocated part)."""
    touch_in(tx, member_id, store_id, int(time.time()) if now_s is None else now_s)
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
        given = grant_in(tx, private_key, member_id, store_id, ledger, amount, None, at)
        audit(tx, principal, "member.escrow_grant", f"member:{member_id}", {"unallocated": free, "ledger": ledger},
              {"store_id": store_id, "amount": amount, "grant_id": given.grant_id}, at=at)
        return given


class _Short(msgspec.Struct):
    """Why an authorisation could not grant yet: what HQ has unallocated, what other stores hold."""

    free: int
    elsewhere: int
    asked: bool  # new reclaim entries went onto other stores' feeds


def _try_authorize(tx: Tx, private_key: bytes, store_id: str, req: AuthorizeRequest, at: str) -> EscrowGrant | _Short:
    request_key = f"{store_id}:{req.request_id}"
    tx.lock("hq_members", "member_id", [req.member_id])
    prior = tx.one("SELECT grant_id, member_id, ledger, amount, store_id FROM hq_grants WHERE request_id = ?",
                   (request_key,))
    if prior is not None:
        return EscrowGrant(grant_id=prior[0], member_id=prior[1], ledger=prior[2], amount=int(prior[3]))
    free = _unallocated(tx, req.member_id, req.ledger)
    if free is None:
        raise HqError(404, "unknown_member", f"no member {req.member_id[:64]}")
    if free >= req.amount:
        return grant_in(tx, private_key, req.member_id, store_id, req.ledger, req.amount, request_key, at)
    others = tx.one("SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? AND ledger = ? "
                    "AND store_id <> ?", (req.member_id, req.ledger, store_id))
    elsewhere = int(others[0]) if others else 0
    if max(free, 0) + elsewhere < req.amount:
        # Chain-wide short: even everything the other stores hold would not cover what this store lacks.
        return _Short(free=max(free, 0), elsewhere=elsewhere, asked=False)
    before = tx.one("SELECT count(*) FROM hq_reclaims WHERE member_id = ?", (req.member_id,))
    _reclaim(tx, private_key, req.member_id, req.ledger, req.amount - max(free, 0), exclude=store_id, at=at)
    after = tx.one("SELECT count(*) FROM hq_reclaims WHERE member_id = ?", (req.member_id,))
    return _Short(free=max(free, 0), elsewhere=elsewhere, asked=(after or (0,))[0] != (before or (0,))[0])


def authorize(db: HqDb, private_key: bytes, store_id: str, req: AuthorizeRequest, at: str, *,
              releases: ReleaseSignal | None = None, wait_s: float = 0.0,
              fed: Callable[[], None] | None = None) -> EscrowGrant:
    """An online spend at a store: grant the store what it lacks, in this one call. Out of the member's
    unallocated balance; else ask the other stores holding escrow to give it back and wait up to
    `wait_s` for their releases (`releases` wakes the wait when a batch with one commits), then grant.
    `fed` is called after reclaim entries were appended (to wake the stores' feed long-polls).

    402 `insufficient_balance` / `insufficient_points` only when the chain-wide holdings are short;
    402 `held_elsewhere` (with `available` and `held_elsewhere`) when the money exists but the stores
    holding it did not release it in time (offline, or slow)."""
    if req.amount <= 0:
        raise HqError(422, "bad_amount", "amount must be positive")
    if req.wait_ms is not None:
        wait_s = min(wait_s, req.wait_ms / 1000)
    deadline = time.monotonic() + wait_s
    with releases.watch(req.member_id) if releases is not None else contextlib.nullcontext():
        while True:
            seen = releases.version(req.member_id) if releases is not None else 0
            with db.write() as tx:
                outcome = _try_authorize(tx, private_key, store_id, req, at)
            if isinstance(outcome, EscrowGrant):
                return outcome
            if outcome.asked and fed is not None:
                fed()
            if outcome.free + outcome.elsewhere < req.amount:
                raise HqError(402, "insufficient_balance" if req.ledger == "value" else "insufficient_points",
                              f"member {req.member_id} has {outcome.free + outcome.elsewhere} beyond this store's "
                              f"escrow, the tender lacks {req.amount}", available=outcome.free)
            remaining = deadline - time.monotonic()
            if releases is None or remaining <= 0:
                raise HqError(402, "held_elsewhere",
                              f"member {req.member_id}: {outcome.elsewhere} is held by other stores that did not "
                              f"release it in time; {outcome.free} is unallocated", available=outcome.free,
                              held_elsewhere=outcome.elsewhere, ledger=req.ledger)
            releases.wait(req.member_id, seen, remaining)


def reclaim_from(tx: Tx, private_key: bytes, member_id: str, store_id: str, ledger: str, amount: int,
                 at: str) -> bool:
    """Ask one store for up to `amount` back, unless a request to it is open. True if one was asked."""
    if tx.one("SELECT 1 FROM hq_reclaims WHERE member_id = ? AND store_id = ? AND ledger = ? AND released IS NULL",
              (member_id, store_id, ledger)) is not None:
        return False
    request_id = f"R-{uuid.uuid4()}"
    tx.run("""INSERT INTO hq_reclaims (request_id, member_id, store_id, ledger, amount, at)
              VALUES (?, ?, ?, ?, ?, ?)""", (request_id, member_id, store_id, ledger, amount, at))
    append_feed(tx, private_key, store_id, EscrowReclaim(request_id=request_id, member_id=member_id,
                                                         ledger=ledger, amount=amount), at)  # type: ignore[arg-type]
    return True


def _reclaim(tx: Tx, private_key: bytes, member_id: str, ledger: str, wanted: int, exclude: str | None,
             at: str) -> int:
    """Ask stores holding escrow for this member to give back up to `wanted` (one open request per store).
    Stores with no open request are asked first: a store that has not answered an earlier request may be
    offline, and another store's release is then the quicker way (asking both gives back more than needed
    at worst, which stays unallocated)."""
    holders = tx.all("""SELECT store_id, outstanding FROM hq_escrow
                        WHERE member_id = ? AND ledger = ? AND outstanding > 0
                        ORDER BY outstanding DESC, store_id""", (member_id, ledger))
    open_to = {r[0]: int(r[1]) for r in tx.all(
        "SELECT store_id, amount FROM hq_reclaims WHERE member_id = ? AND ledger = ? AND released IS NULL",
        (member_id, ledger))}
    asked = 0
    for store_id, outstanding in holders:
        if asked >= wanted or store_id == exclude or store_id in open_to:
            continue
        amount = min(int(outstanding), wanted - asked)
        reclaim_from(tx, private_key, member_id, store_id, ledger, amount, at)
        asked += amount
    return asked + sum(a for s, a in open_to.items() if s != exclude)


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
