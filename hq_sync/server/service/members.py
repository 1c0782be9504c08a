"""Members at HQ: the directory (lookups by phone, card or id, aliases of merged members, profile edits),
the authoritative balances, and escrow — grants, online authorisations, reclaims.

Every lookup of a member by phone or card at HQ goes through `members_with` (one place to change when
phones are stored differently).

An online authorisation meets the tender in one attempt (docs/sync.md): out of the unallocated
balance, else by asking the other stores that hold escrow for it back and waiting a bounded time for
their releases (`ReleaseSignal` in `escrow_signals.py` wakes it), then granting. It refuses
`insufficient_balance` / `insufficient_points` only when the chain-wide holdings are short, and
`held_elsewhere` when the money exists but a store holding it did not release in time.
"""

from __future__ import annotations

import contextlib
import datetime
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from hq_sync.server.service import pii
from hq_sync.server.service.access import Principal, require, require_store, scope_sql
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed, queue_feed, queue_feed_many
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import (
    AuthorizeRequest,
    EscrowGrant,
    EscrowReclaim,
    Ledger,
    MemberBalances,
    MemberFound,
    MemberRow,
    MembersPut,
)

if TYPE_CHECKING:
    from hq_sync.server.service.escrow_signals import ReleaseSignal

# Personal data is sealed (service/pii.py): `pii` sits at the phone's place, the next three are unused.
_MEMBER_COLUMNS = ("member_id, tier, pii, NULL, NULL, NULL, tags, home_store, created_at, "
                   "(SELECT s.auto_tags FROM hq_member_status s WHERE s.member_id = hq_members.member_id)")


def _row(tx: Tx, r: tuple[Any, ...]) -> MemberRow:
    p = pii.opened(tx, str(r[0]), r[2])
    return MemberRow(r[0], r[1], p.phone, p.card_no, p.name, p.birthday, msgspec.json.decode(r[6], type=list[str]),
                     r[7], r[8],
                     msgspec.json.decode(r[9] or "[]", type=list[str]))


def member_rows(tx: Tx, member_id: str | None) -> list[MemberRow]:
    sql = f"SELECT {_MEMBER_COLUMNS} FROM hq_members"
    rows = tx.all(sql + " WHERE member_id = ?", (member_id,)) if member_id else tx.all(sql + " ORDER BY member_id")
    return [_row(tx, r) for r in rows]


def member_rows_of(tx: Tx, member_ids: Iterable[str]) -> list[MemberRow]:
    """Profiles of these members, in the order given (unknown ids left out)."""
    ids = list(dict.fromkeys(member_ids))
    found: dict[str, MemberRow] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for r in tx.all(f"SELECT {_MEMBER_COLUMNS} FROM hq_members WHERE member_id IN ({marks})", chunk):
            found[r[0]] = _row(tx, r)
    return [found[m] for m in ids if m in found]


# -- the directory: lookups and aliases ----------------------------------------------------------------------

def members_with(tx: Tx, *, phone: str | None = None, card: str | None = None,
                 current_only: bool = False) -> list[tuple[str, str]]:
    """(member_id, created_at) of the members holding this phone or card, earliest first: THE lookup by
    phone or card at HQ. `current_only` leaves out merged ids (aliases)."""
    if phone is not None:
        column, value = "phone_hash", pii.keys(tx).phone_hash(phone)
    elif card is not None:
        column, value = "card_hash", pii.keys(tx).card_hash(card)
    else:
        return []
    if value is None:
        return []
    sql = f"SELECT member_id, created_at FROM hq_members m WHERE {column} = ?"
    if current_only:
        sql += " AND NOT EXISTS (SELECT 1 FROM hq_member_aliases a WHERE a.alias = m.member_id)"
    rows = [(str(r[0]), str(r[1])) for r in tx.all(sql, (value,))]
    return sorted(rows, key=lambda r: (created_key(r[1]), r[0]))


def created_key(text: str) -> datetime.datetime:
    """A creation time as an instant (stores write their own offsets); unreadable ones sort last."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return datetime.datetime.max.replace(tzinfo=datetime.UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def resolve(tx: Tx, member_id: str) -> str:
    """The member an id stands for now: itself, or the member it was merged into."""
    row = tx.one("SELECT member_id FROM hq_member_aliases WHERE alias = ?", (member_id,))
    return str(row[0]) if row else member_id


def resolve_many(tx: Tx, member_ids: Iterable[str]) -> dict[str, str]:
    """alias -> member for those of `member_ids` that are aliases."""
    ids = sorted(set(member_ids))
    out: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        out.update((str(a), str(m)) for a, m in tx.all(
            f"SELECT alias, member_id FROM hq_member_aliases WHERE alias IN ({marks})", chunk))
    return out


def aliases_of(tx: Tx, member_id: str) -> list[str]:
    return [str(r[0]) for r in tx.all("SELECT alias FROM hq_member_aliases WHERE member_id = ? ORDER BY alias",
                                      (member_id,))]


def find_member(tx: Tx, *, member_id: str | None = None, phone: str | None = None,
                card: str | None = None) -> str | None:
    """The (current) member with this id, phone or card, or None; aliases resolve to their member."""
    if member_id is not None:
        found = resolve(tx, member_id)
        return found if tx.one("SELECT 1 FROM hq_members WHERE member_id = ?", (found,)) else None
    matches = members_with(tx, phone=phone, card=card)
    return resolve(tx, matches[0][0]) if matches else None


def balance_rows(tx: Tx, member_ids: Iterable[str]) -> list[tuple[str, int, int]]:
    """(member_id, balance, points) of these members, as HQ holds them now."""
    ids = sorted(set(member_ids))
    out: list[tuple[str, int, int]] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        out.extend((str(r[0]), int(r[1]), int(r[2])) for r in tx.all(
            f"SELECT member_id, balance, points FROM hq_members WHERE member_id IN ({marks}) ORDER BY member_id",
            chunk))
    return out


def lookup_for_store(db: HqDb, store_id: str, *, member_id: str | None, phone: str | None, card: str | None,
                     at: str) -> MemberFound:
    """A store's online lookup: the member's profile, chain-wide balance and aliases, or 404."""
    with db.read() as tx:
        found = find_member(tx, member_id=member_id, phone=phone, card=card)
        if found is None:
            raise HqError(404, "unknown_member", "no member with that id, phone or card at HQ")
        row = tx.one(f"SELECT {_MEMBER_COLUMNS}, balance, points FROM hq_members WHERE member_id = ?", (found,))
        assert row is not None
        acked = tx.one("SELECT acked_seq FROM hq_stores WHERE store_id = ?", (store_id,))
        return MemberFound(member=_row(tx, row), balance=int(row[10]), points=int(row[11]), as_of=at,
                           acked=int(acked[0]) if acked else 0, aliases=aliases_of(tx, found))


def send_balances(tx: Tx, private_key: bytes, members: set[str], at: str, acting: tuple[str, int] = ("", 0)) -> int:
    """One `member_balances` entry per store that deals with these members: the acting store (whose batch
    moved them: `acting` = (store, its new ack)), and every store holding (or having held) escrow for one
    of them, each told how far its own stream is in the figures (docs/sync.md)."""
    store_id, acked = acting
    rows = {m: (m, b, p) for m, b, p in balance_rows(tx, members)}
    if not rows:
        return 0
    targets: dict[str, set[str]] = {store_id: set(rows)} if store_id else {}
    ids = sorted(rows)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for member_id, holder in tx.all(
                f"SELECT DISTINCT member_id, store_id FROM hq_escrow WHERE member_id IN ({marks})", chunk):
            targets.setdefault(str(holder), set()).add(str(member_id))
    for target in sorted(targets):
        if target == store_id:
            target_acked = acked
        else:
            row = tx.one("SELECT acked_seq FROM hq_stores WHERE store_id = ? AND public_key IS NOT NULL", (target,))
            if row is None:
                continue
            target_acked = int(row[0])
        queue_feed(tx, private_key, target, MemberBalances(rows=[rows[m] for m in sorted(targets[target])],
                                                           as_of=at, store=target, acked=target_acked), at)
    return len(targets)


# -- profile edits at HQ -----------------------------------------------------------------------------------------

Phone = Annotated[str, Meta(pattern=r"^1[3-9][0-9]{9}$")]
CardNo = Annotated[str, Meta(pattern=r"^[0-9A-Za-z]{4,32}$")]


class MemberPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`PATCH /hq/v1/members/{id}`: the fields given change (null clears phone, card or birthday)."""

    name: Annotated[str, Meta(max_length=64)] | UnsetType = UNSET
    birthday: datetime.date | None | UnsetType = UNSET
    tier: Annotated[str, Meta(min_length=1, max_length=32)] | UnsetType = UNSET
    tags: Annotated[list[Annotated[str, Meta(min_length=1, max_length=32)]], Meta(max_length=20)] | UnsetType = UNSET
    phone: Phone | None | UnsetType = UNSET
    card_no: CardNo | None | UnsetType = UNSET


def require_member(tx: Tx, principal: Principal, member_id: str) -> None:
    """A region manager acts only on members whose home store is in his regions."""
    if principal.scoped:
        row = tx.one("SELECT home_store FROM hq_members WHERE member_id = ?", (member_id,))
        if row is None or row[0] is None:
            raise HqError(403, "out_of_scope", f"member {member_id[:64]} is outside your regions")
        require_store(tx, principal, str(row[0]))


def edit_member(db: HqDb, principal: Principal, private_key: bytes, member_id: str, patch: MemberPatch,
                at: str) -> dict[str, Any]:
    """Change a member's profile at HQ (audited); every store's cache gets it through the feed."""
    require(principal, "members.write")
    with db.write() as tx:
        target = resolve(tx, member_id)
        tx.lock("hq_members", "member_id", [target])
        rows = member_rows(tx, target)
        if not rows:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        require_member(tx, principal, target)
        before = rows[0]
        changes: dict[str, Any] = {}
        if not isinstance(patch.tier, UnsetType):
            if tx.one("SELECT 1 FROM hq_tiers WHERE tier = ?", (patch.tier,)) is None:
                raise HqError(422, "unknown_tier", f"no tier {patch.tier}")
            changes["tier"] = patch.tier
        if not isinstance(patch.name, UnsetType):
            changes["name"] = patch.name
        if not isinstance(patch.birthday, UnsetType):
            changes["birthday"] = patch.birthday.isoformat() if patch.birthday else None
        if not isinstance(patch.tags, UnsetType):
            changes["tags"] = list(patch.tags)
        for field, column in (("phone", "phone"), ("card_no", "card_no")):
            value = getattr(patch, field)
            if isinstance(value, UnsetType):
                continue
            if value is not None:
                others = [m for m, _ in members_with(tx, **{"phone" if field == "phone" else "card": value})
                          if resolve(tx, m) != target]
                if others:
                    raise HqError(409, "member_exists", f"another member has this {field}")
            changes[column] = value
        after = msgspec.structs.replace(before, **changes)
        if after != before:
            tx.run("UPDATE hq_members SET tier = ?, tags = ? WHERE member_id = ?",
                   (after.tier, msgspec.json.encode(after.tags).decode(), target))
            pii.write_personal(tx, target, pii.of_row(after))
            audit(tx, principal, "member.edit", f"member:{target}", pii.masked(before), pii.masked(after), at=at)
            append_feed(tx, private_key, "*", MembersPut(members=[after]), at)
        pii.audit(tx, principal.username, [target], pii.PERSONAL_FIELDS, "read", "hq_api", at)  # the answer shows them
    return {"member_id": target, "changed": sorted(changes) if after != before else [],
            **{k: v for k, v in msgspec.to_builtins(_profile(after)).items()}}


def _profile(row: MemberRow) -> dict[str, Any]:
    return {"member_id": row.member_id, "tier": row.tier, "phone": row.phone, "card_no": row.card_no,
            "name": row.name, "birthday": row.birthday, "tags": row.tags}


# -- members and escrow -----------------------------------------------------------------------------------------

def member_view(db: HqDb, principal: Principal, member_id: str) -> dict[str, Any]:
    """The member's chain-wide balance and points (an alias shows the member it was merged into, with its
    aliases); the escrow per store only for the stores in the principal's scope (the unallocated part
    stays chain-wide)."""
    require(principal, "members.read")
    where, args = scope_sql(principal)
    with db.read() as tx:
        member_id = resolve(tx, member_id)
        row = tx.one("SELECT member_id, tier, balance, points, home_store FROM hq_members WHERE member_id = ?",
                     (member_id,))
        if row is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        aliases = aliases_of(tx, member_id)
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
            "unallocated_points": int(row[3]) - allocated_points, "aliases": aliases,
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
             request_id: str | None, at: str, now_s: int | None = None,
             known: tuple[int, int, int] | None = None) -> EscrowGrant:
    """A grant inside the caller's transaction (the caller locked the member and checked the unallocated part).
    `known`: the member's balance and points and the store's acked seq, when the caller read them already
    (an authorisation: then every statement here is a write, and a pipelined transaction sends them in
    one round trip)."""
    touch_in(tx, member_id, store_id, int(time.time()) if now_s is None else now_s)
    grant = EscrowGrant(grant_id=f"G-{uuid.uuid4()}", member_id=member_id, ledger=ledger, amount=amount)
    tx.run("""INSERT INTO hq_grants (grant_id, request_id, member_id, store_id, ledger, amount, at)
              VALUES (?, ?, ?, ?, ?, ?, ?)""", (grant.grant_id, request_id, member_id, store_id, ledger, amount, at))
    tx.run("""INSERT INTO hq_escrow (member_id, store_id, ledger, outstanding) VALUES (?, ?, ?, ?)
              ON CONFLICT (member_id, store_id, ledger) DO UPDATE SET outstanding = hq_escrow.outstanding + ?""",
           (member_id, store_id, ledger, amount, amount))
    # The store now deals with the member, so it gets the chain-wide figures too (never a stale
    # balance beside a larger spendable part, offline).
    if known is not None:  # a grant moves neither the balance nor the points
        figures = MemberBalances(rows=[(member_id, known[0], known[1])], as_of=at, store=store_id, acked=known[2])
    else:
        acked = tx.one("SELECT acked_seq FROM hq_stores WHERE store_id = ?", (store_id,))
        figures = MemberBalances(rows=balance_rows(tx, [member_id]), as_of=at, store=store_id,
                                 acked=int(acked[0]) if acked else 0)
    # The grant also goes down the feed: if the answer to the hub is lost, the feed still brings it. Queued,
    # not numbered here: no authorisation waits for another's commit on the feed counter (docs/hq-serving.md).
    queue_feed_many(tx, private_key, [(store_id, grant), (store_id, figures)], at)
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
        queue_feed(tx, private_key, store_id, MembersPut(members=members), at)  # the store may not know them yet
        given = grant_in(tx, private_key, member_id, store_id, ledger, amount, None, at)
        audit(tx, principal, "member.escrow_grant", f"member:{member_id}", {"unallocated": free, "ledger": ledger},
              {"store_id": store_id, "amount": amount, "grant_id": given.grant_id}, at=at)
        return given


class _Short(msgspec.Struct):
    """Why an authorisation could not grant yet: what HQ has unallocated, what other stores hold."""

    free: int
    elsewhere: int
    asked: bool  # new reclaim entries went onto other stores' feeds


def _authorize_read(tx: Tx) -> str:
    return """SELECT m.balance, m.points,
                     (SELECT coalesce(sum(e.outstanding), 0) FROM hq_escrow e
                      WHERE e.member_id = m.member_id AND e.ledger = ?),
                     (SELECT g.grant_id FROM hq_grants g WHERE g.member_id = m.member_id AND g.request_id = ?),
                     (SELECT s.acked_seq FROM hq_stores s WHERE s.store_id = ?)
              FROM hq_members m WHERE m.member_id = ?""" + (" FOR UPDATE OF m" if tx.dialect == "postgresql" else "")


# The tables a grant writes (grant_in, touch_in, feed.queue_feed_many), besides those the read above reads.
_GRANT_WRITES = ("hq_grants", "hq_escrow", "hq_escrow_activity", "hq_feed_pending")


def warm_authorize(tx: Tx) -> None:
    """What an authorisation reads, for no member, and a look at the tables a grant writes: run on each of an
    HQ worker's authorisation connections before it serves (`Hq.warm`, in a transaction rolled back). A new
    connection's backend loads each table's and index's description at its first use; the first tills'
    authorisations after a start paid for it, tens of milliseconds each while the busy hour began."""
    tx.one(_authorize_read(tx), ("value", "", "", ""))
    for table in _GRANT_WRITES:
        tx.all(f"SELECT * FROM {table} LIMIT 0")


def _try_authorize(tx: Tx, private_key: bytes, store_id: str, req: AuthorizeRequest, at: str) -> EscrowGrant | _Short:
    request_key = f"{store_id}:{req.request_id}"
    # One statement locks the member's row and reads all a grant needs: the balance and points, what the
    # stores hold, an earlier grant for this request, the store's acked seq. With the grant's writes sent
    # together (a pipelined transaction, api/sync.py), an authorisation is two round trips to PostgreSQL.
    row = tx.one(_authorize_read(tx), (req.ledger, request_key, store_id, req.member_id))
    if row is None:
        raise HqError(404, "unknown_member", f"no member {req.member_id[:64]}")
    balance, points, held, prior_id, acked = int(row[0]), int(row[1]), int(row[2]), row[3], int(row[4] or 0)
    if prior_id is not None:
        prior = tx.one("SELECT grant_id, member_id, ledger, amount FROM hq_grants WHERE grant_id = ?", (prior_id,))
        assert prior is not None
        return EscrowGrant(grant_id=prior[0], member_id=prior[1], ledger=prior[2], amount=int(prior[3]))
    free = (balance if req.ledger == "value" else points) - held
    if free >= req.amount:
        return grant_in(tx, private_key, req.member_id, store_id, req.ledger, req.amount, request_key, at,
                        known=(balance, points, acked))
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
              fed: Callable[[], None] | None = None, marks: list[float] | None = None) -> EscrowGrant:
    """An online spend at a store: grant the store what it lacks, in this one call. Out of the member's
    unallocated balance; else ask the other stores holding escrow to give it back and wait up to
    `wait_s` for their releases (`releases` wakes the wait when a batch with one commits), then grant.
    `fed` is called after reclaim entries were appended (to wake the stores' feed long-polls). `marks`, when
    given, gets the first attempt's times (perf_counter): started, connection in hand, read, committed.

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
            timed = marks is not None and len(marks) == 1
            if timed:
                marks.append(time.perf_counter())  # type: ignore[union-attr]
            with db.write(pipeline=True) as tx:
                if timed:
                    marks.append(time.perf_counter())  # type: ignore[union-attr]
                outcome = _try_authorize(tx, private_key, store_id, req, at)
                if timed:
                    marks.append(time.perf_counter())  # type: ignore[union-attr]
            if timed:
                marks.append(time.perf_counter())  # type: ignore[union-attr]
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
    queue_feed(tx, private_key, store_id, EscrowReclaim(request_id=request_id, member_id=member_id,
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
