"""Escrow policy at HQ: how a member's balance is spread over the stores ahead of time, and the signals
that make an online spend at a store that lacks escrow finish in one attempt.

- `EscrowPolicy`: the knobs, from `BACKROOM_HQ_ESCROW_<FIELD>` (docs/sync.md).
- `ReleaseSignal`: wakes an authorisation that waits for other stores' releases, when a batch with a
  release for that member commits. Thread-safe: the authorisation and the ingest run in different
  worker threads (or, in tests, in different plain threads).
- `EscrowEvents`: what ingest and pairing tell the policy timer (members who shopped at a store).
- `run_policy`: the timer's work — the home store's standing escrow, proactive grants to the stores
  where a member shops, and reclaiming idle grants. Every grant comes out of the member's unallocated
  balance in a transaction that locks the member, so `balance >= sum(outstanding) >= 0` holds.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import msgspec
from msgspec import Meta

from hq_sync.server.service.feed import queue_feed
from hq_sync.server.service.members import grant_in, member_rows, reclaim_from, touch_in
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import Ledger, MembersPut

Percent = Annotated[int, Meta(ge=0, le=100)]
Seconds = Annotated[float, Meta(ge=0, le=10 * 365 * 86400)]


class EscrowPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    authorize_wait_s: Annotated[float, Meta(ge=0, le=10)] = 0.8  # how long an authorisation waits for releases
    home_share_pct: Percent = 50  # the home store's standing escrow: this share of the balance (and points)
    shop_share_pct: Percent = 20  # a store where the member shops is topped up to this share
    min_grant: Annotated[int, Meta(ge=1, le=10**12)] = 100  # smaller top-ups are not worth a feed entry
    idle_reclaim_s: Seconds = 14 * 86400.0  # a non-home store's escrow unused this long goes back
    tick_s: Annotated[float, Meta(gt=0, le=3600)] = 1.0  # how often the timer handles new shopping
    sweep_s: Annotated[float, Meta(gt=0, le=86400)] = 300.0  # how often it checks every member

    @classmethod
    def from_env(cls) -> EscrowPolicy:
        """Defaults, overridden by BACKROOM_HQ_ESCROW_<FIELD> (e.g. BACKROOM_HQ_ESCROW_HOME_SHARE_PCT=30)."""
        raw = {name: os.environ[f"BACKROOM_HQ_ESCROW_{name.upper()}"] for name in cls.__struct_fields__
               if os.environ.get(f"BACKROOM_HQ_ESCROW_{name.upper()}")}
        return msgspec.convert(raw, cls, strict=False)


# -- the policy ---------------------------------------------------------------------------------------------------

Planned = tuple[str, Ledger, int]  # a top-up the policy wants: store, ledger, amount


def _plan_member(tx: Tx, member_id: str, stores: set[str], policy: EscrowPolicy) -> tuple[str, list[Planned]]:
    """The member's home store and the top-ups the policy wants, `(store, ledger, amount)`: standing escrow at
    the home store, then the shop share at `stores`, each up to its target as far as the unallocated balance
    allows, none under `min_grant`. Reads only."""
    row = tx.one("SELECT balance, points, home_store FROM hq_members WHERE member_id = ?", (member_id,))
    if row is None:
        return "", []
    if tx.one("SELECT 1 FROM hq_reclaims WHERE member_id = ? AND released IS NULL", (member_id,)) is not None:
        return "", []  # money is on its way back for an authorisation: leave it to that
    home = row[2]
    named = sorted(stores | ({home} if home else set()))
    paired = {r[0] for r in tx.all("SELECT store_id FROM hq_stores WHERE public_key IS NOT NULL AND store_id IN ("
                                   + ", ".join("?" * len(named)) + ")", named)} if named else set()
    held: dict[tuple[str, str], int] = {(s, lg): int(o) for s, lg, o in tx.all(
        "SELECT store_id, ledger, outstanding FROM hq_escrow WHERE member_id = ?", (member_id,))}
    planned: list[Planned] = []
    for ledger, total in (("value", int(row[0])), ("points", int(row[1]))):
        free = total - sum(o for (_, lg), o in held.items() if lg == ledger)
        wanted: list[tuple[str, int]] = []
        if home and home in paired and policy.home_share_pct:
            wanted.append((home, total * policy.home_share_pct // 100))
        if policy.shop_share_pct:
            wanted += [(s, total * policy.shop_share_pct // 100) for s in sorted(stores) if s in paired and s != home]
        for store_id, target in wanted:
            amount = min(target - held.get((store_id, ledger), 0), free)  # the grant that brings it up to target
            if amount < policy.min_grant:
                continue
            planned.append((store_id, ledger, amount))  # type: ignore[arg-type]
            free -= amount
            held[(store_id, ledger)] = held.get((store_id, ledger), 0) + amount
    return home or "", planned


def _apply_member(tx: Tx, private_key: bytes, member_id: str, stores: set[str], policy: EscrowPolicy, at: str,
                  now_s: int) -> int:
    """The policy's top-ups for this member (`_plan_member`, read in the caller's transaction, which locked the
    member), granted. Returns grants made."""
    home, planned = _plan_member(tx, member_id, stores, policy)
    profile_sent: set[str] = set()
    for store_id, ledger, amount in planned:
        if store_id not in profile_sent and store_id != home:  # the store may not know the member yet
            queue_feed(tx, private_key, store_id, MembersPut(members=member_rows(tx, member_id)), at)
            profile_sent.add(store_id)
        grant_in(tx, private_key, member_id, store_id, ledger, amount, None, at, now_s)
    return len(planned)


def _standing_candidates(tx: Tx, policy: EscrowPolicy) -> list[str]:
    """Members whose home store (paired) holds less than its standing share, by at least `min_grant`."""
    if not policy.home_share_pct:
        return []
    rows = tx.all(
        """SELECT m.member_id FROM hq_members m
           JOIN hq_stores s ON s.store_id = m.home_store AND s.public_key IS NOT NULL
           LEFT JOIN hq_escrow v ON v.member_id = m.member_id AND v.store_id = m.home_store AND v.ledger = 'value'
           LEFT JOIN hq_escrow p ON p.member_id = m.member_id AND p.store_id = m.home_store AND p.ledger = 'points'
           WHERE m.balance * ? / 100 - coalesce(v.outstanding, 0) >= ?
              OR m.points * ? / 100 - coalesce(p.outstanding, 0) >= ?
           ORDER BY m.member_id""",
        (policy.home_share_pct, policy.min_grant, policy.home_share_pct, policy.min_grant))
    return [str(r[0]) for r in rows]


def reclaim_idle(db: HqDb, private_key: bytes, policy: EscrowPolicy, at: str, now_s: int,
                 skip: set[str] | frozenset[str] = frozenset()) -> int:
    """Ask for the escrow back that a store other than the member's home has not used for
    `idle_reclaim_s` (no spend there, no grant to it). Returns how many reclaims were asked."""
    asked = 0
    with db.write() as tx:
        rows = tx.all(
            """SELECT e.member_id, e.store_id, e.ledger, e.outstanding, a.used_s FROM hq_escrow e
               JOIN hq_members m ON m.member_id = e.member_id
               LEFT JOIN hq_escrow_activity a ON a.member_id = e.member_id AND a.store_id = e.store_id
               WHERE e.outstanding > 0 AND (m.home_store IS NULL OR m.home_store <> e.store_id)
                 AND (a.used_s IS NULL OR a.used_s <= ?)
               ORDER BY e.member_id, e.store_id, e.ledger""", (now_s - int(policy.idle_reclaim_s),))
        for member_id, store_id, ledger, outstanding, used_s in rows:
            if member_id in skip:
                continue
            if used_s is None:  # escrow from before activity was tracked: its idle time starts now
                touch_in(tx, member_id, store_id, now_s)
                continue
            tx.lock("hq_members", "member_id", [member_id])
            if reclaim_from(tx, private_key, member_id, store_id, ledger, int(outstanding), at):
                asked += 1
            touch_in(tx, member_id, store_id, now_s)  # the next idle reclaim, if any, is a whole period later
    return asked


def run_policy(db: HqDb, private_key: bytes, policy: EscrowPolicy, shopped: set[tuple[str, str]], sweep: bool,
               busy: set[str], at: str, now_s: int | None = None) -> int:
    """One turn of the policy timer: proactive grants for `shopped`, and with `sweep` the standing
    escrow of every member and the idle reclaims. Members in `busy` (an authorisation is waiting on
    them) are left alone. Returns how many grants and reclaims were made (feed entries to wake)."""
    now = int(time.time()) if now_s is None else now_s
    by_member: dict[str, set[str]] = {}
    for member_id, store_id in shopped:
        by_member.setdefault(member_id, set()).add(store_id)
    if sweep:
        with db.read() as tx:
            for member_id in _standing_candidates(tx, policy):
                by_member.setdefault(member_id, set())
    made = 0
    for member_id in sorted(by_member):
        if member_id in busy:
            continue
        # Most shoppers need nothing (their stores already hold their share): found out in a read, without
        # the member's row lock, which a till's authorisation for the same member would wait behind. The
        # grants themselves are planned again under the lock.
        with db.read() as tx:
            if not _plan_member(tx, member_id, by_member[member_id], policy)[1]:
                continue
        with db.write() as tx:
            tx.lock("hq_members", "member_id", [member_id])
            made += _apply_member(tx, private_key, member_id, by_member[member_id], policy, at, now)
    if sweep:
        made += reclaim_idle(db, private_key, policy, at, now, busy)
    return made
