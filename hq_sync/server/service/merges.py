"""Merging two member records of one person (docs/sync.md "Members across the chain").

Two stores cut off from HQ can each sign up the same phone (or card). When the second record reaches
HQ, or when an admin asks (`POST /hq/v1/members/{winner}/merge`), the records become one: the earliest
created wins; the other's balance and points move to the winner as append-only ledger entries
(`merge_out` on the loser, `merge_in` on the winner: the chain's total is unchanged), its escrow at every
store becomes the winner's escrow at that store, and its id lives on as an alias
(`hq_member_aliases`) that every lookup, every later delta and every store resolves to the winner.
The feed tells every store (`members` with both profiles, then `member_merged`; the winner's balances
go to the stores holding escrow for it); each store moves its own holdings of the loser the same way.

`pick_winner`, `plan_merge` and `combine_profiles` are pure; `merge` applies them in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from hq_sync.server.service import pii
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.service.members import (
    created_key,
    member_rows,
    members_with,
    require_member,
    resolve,
    send_balances,
)
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import MemberMerged, MemberRow, MembersPut

LEDGERS = ("value", "points")


class MergePlan(msgspec.Struct, frozen=True):
    """What merging `loser` into `winner` writes: ledger entries (member, ledger, delta, kind) and escrow
    moves (store, ledger, amount) from the loser's outstanding to the winner's."""

    winner: str
    loser: str
    ledger: list[tuple[str, str, int, str]]
    escrow: list[tuple[str, str, int]]


def pick_winner(candidates: Iterable[tuple[str, str]]) -> tuple[str, list[str]]:
    """(member_id, created_at) of one person's records -> (winner, losers): the earliest created wins
    (times compared as instants, whatever their offsets); the smaller id breaks a tie."""
    ordered = sorted(candidates, key=lambda c: (created_key(c[1]), c[0]))
    if not ordered:
        raise ValueError("no candidates")
    return ordered[0][0], [c[0] for c in ordered[1:]]


def plan_merge(winner: str, loser: str, balance: int, points: int,
               escrow: dict[tuple[str, str], int]) -> MergePlan:
    """Move all of the loser's holdings to the winner: one pair of entries per non-empty ledger, and
    every store's outstanding escrow of the loser to the winner at the same store."""
    if winner == loser:
        raise ValueError("a member cannot be merged into itself")
    if balance < 0 or points < 0 or any(v < 0 for v in escrow.values()):
        raise ValueError("negative holdings")
    ledger: list[tuple[str, str, int, str]] = []
    for name, amount in (("value", balance), ("points", points)):
        if amount:
            ledger += [(loser, name, -amount, "merge_out"), (winner, name, amount, "merge_in")]
    moves = [(store, name, amount) for (store, name), amount in sorted(escrow.items()) if amount > 0]
    return MergePlan(winner=winner, loser=loser, ledger=ledger, escrow=moves)


def combine_profiles(winner: MemberRow, loser: MemberRow) -> tuple[MemberRow, MemberRow]:
    """The winner keeps its profile and takes what it lacks from the loser (phone, card, name, birthday,
    tags); the loser keeps only the phone or card the winner does not hold (they still find it, as an alias)."""
    merged = msgspec.structs.replace(
        winner, phone=winner.phone or loser.phone, card_no=winner.card_no or loser.card_no,
        name=winner.name or loser.name, birthday=winner.birthday or loser.birthday,
        tags=winner.tags + [t for t in loser.tags if t not in winner.tags])
    rest = msgspec.structs.replace(
        loser, phone=None if loser.phone == merged.phone else loser.phone,
        card_no=None if loser.card_no == merged.card_no else loser.card_no)
    return merged, rest


def merge(tx: Tx, private_key: bytes, winner: str, loser: str, actor: Principal, reason: str,
          at: str) -> dict[str, Any]:
    """Merge `loser` into `winner` in this transaction (both current members); feed and audit included."""
    tx.lock("hq_members", "member_id", sorted([winner, loser]))
    if winner == loser:
        raise HqError(409, "same_member", "a member cannot be merged into itself")
    for member_id in (winner, loser):
        if resolve(tx, member_id) != member_id:
            raise HqError(409, "already_merged", f"member {member_id[:64]} was already merged into another")
    rows = {r.member_id: r for r in member_rows(tx, winner) + member_rows(tx, loser)}
    for member_id in (winner, loser):
        if member_id not in rows:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
    held = tx.one("SELECT balance, points FROM hq_members WHERE member_id = ?", (loser,))
    assert held is not None
    escrow = {(str(s), str(lg)): int(o) for s, lg, o in tx.all(
        "SELECT store_id, ledger, outstanding FROM hq_escrow WHERE member_id = ?", (loser,))}
    plan = plan_merge(winner, loser, int(held[0]), int(held[1]), escrow)
    ref = f"merge:{loser}>{winner}"
    tx.many("""INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, store_id, ref, at)
               VALUES (?, ?, ?, ?, NULL, ?, ?)""", [(m, lg, d, kind, ref, at) for m, lg, d, kind in plan.ledger])
    sums: dict[str, list[int]] = {}
    for m, lg, d, _ in plan.ledger:
        sums.setdefault(m, [0, 0])[0 if lg == "value" else 1] += d
    for m in sorted(sums, key=lambda m: m != loser):  # the loser goes down first: no CHECK ever sees a negative
        tx.run("UPDATE hq_members SET balance = balance + ?, points = points + ? WHERE member_id = ?",
               (sums[m][0], sums[m][1], m))
    for store_id, lg, amount in plan.escrow:
        tx.run("UPDATE hq_escrow SET outstanding = outstanding - ? WHERE member_id = ? AND store_id = ? AND ledger = ?",
               (amount, loser, store_id, lg))
        tx.run("""INSERT INTO hq_escrow (member_id, store_id, ledger, outstanding) VALUES (?, ?, ?, ?)
                  ON CONFLICT (member_id, store_id, ledger) DO UPDATE
                  SET outstanding = hq_escrow.outstanding + excluded.outstanding""", (winner, store_id, lg, amount))
    # Rows move to the winner's key by insert and delete: an UPDATE of a distribution column is refused by
    # distributed PostgreSQL (docs/hq-scale.md).
    tx.run("""INSERT INTO hq_reclaims (request_id, member_id, store_id, ledger, amount, at, released, answered_at)
              SELECT request_id, ?, store_id, ledger, amount, at, released, answered_at FROM hq_reclaims
              WHERE member_id = ? AND released IS NULL""", (winner, loser))
    tx.run("DELETE FROM hq_reclaims WHERE member_id = ? AND released IS NULL", (loser,))
    tx.run("UPDATE hq_coupons SET member_id = ? WHERE member_id = ?", (winner, loser))
    merged, rest = combine_profiles(rows[winner], rows[loser])
    for row in (rest, merged):  # the loser gives up its phone/card before the winner takes them
        tx.run("UPDATE hq_members SET tags = ? WHERE member_id = ?", (msgspec.json.encode(row.tags).decode(),
                                                                     row.member_id))
        pii.write_personal(tx, row.member_id, pii.of_row(row))
    tx.run("UPDATE hq_member_aliases SET member_id = ? WHERE member_id = ?", (winner, loser))  # chains stay flat
    tx.run("INSERT INTO hq_member_aliases (alias, member_id, merged_at, reason) VALUES (?, ?, ?, ?)",
           (loser, winner, at, reason))
    totals = tx.one("SELECT balance, points FROM hq_members WHERE member_id = ?", (winner,))
    assert totals is not None
    outcome = {"winner": winner, "loser": loser, "balance": int(totals[0]), "points": int(totals[1]),
               "moved": {"balance": int(held[0]), "points": int(held[1]),
                         "escrow": [list(e) for e in plan.escrow]}, "reason": reason}
    audit(tx, actor, "member.merge", f"member:{winner}",
          {"winner": pii.masked(rows[winner]), "loser": pii.masked(rows[loser])}, outcome, at=at)
    append_feed(tx, private_key, "*", MembersPut(members=[merged, rest]), at)
    append_feed(tx, private_key, "*", MemberMerged(loser=loser, winner=winner), at)
    return outcome  # the winner's new balances: the caller's `send_balances` (to the stores holding escrow)


def merge_duplicates(tx: Tx, private_key: bytes, member_ids: Iterable[str], actor: Principal,
                     at: str) -> list[dict[str, Any]]:
    """Merge every group of current members sharing a phone or card with one of `member_ids`."""
    done: list[dict[str, Any]] = []
    for member_id in sorted(set(member_ids)):
        current = resolve(tx, member_id)
        held = pii.personal(tx, current)
        if held is None:
            continue
        for phone, card, what in ((held.phone, None, "phone"), (None, held.card_no, "card")):
            if phone is None and card is None:
                continue
            group = members_with(tx, phone=phone, card=card, current_only=True)
            if len(group) < 2:
                continue
            winner, losers = pick_winner(group)
            for loser in losers:
                done.append(merge(tx, private_key, winner, loser, actor, f"duplicate {what}", at))
    return done


def merge_by_hand(db: HqDb, principal: Principal, private_key: bytes, winner: str, loser: str,
                  at: str) -> dict[str, Any]:
    """An admin merges `loser` into `winner` (the same code path as a detected duplicate); a region
    manager only members of his regions."""
    require(principal, "members.write")
    with db.write() as tx:
        for member_id in (winner, loser):
            if tx.one("SELECT 1 FROM hq_members WHERE member_id = ?", (member_id,)) is not None:
                require_member(tx, principal, member_id)
        outcome = merge(tx, private_key, winner, loser, principal, "manual", at)
        send_balances(tx, private_key, {winner}, at)
        return outcome
