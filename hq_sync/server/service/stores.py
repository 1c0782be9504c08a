"""Stores: pairing codes, pairing (a hub's key, its opening feed, adopted holdings), sync state and quarantine."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import zoneinfo
from typing import Annotated, Any

import msgspec

from hq_sync.server.service import pii
from hq_sync.server.service.access import Principal, require, require_region, require_store, scope_sql
from hq_sync.server.service.audit import audit
from hq_sync.server.service.coupons import snapshot as coupon_snapshot
from hq_sync.server.service.errors import HqError, now_text
from hq_sync.server.service.feed import append_feed
from hq_sync.server.service.member_rules import tier_rows
from hq_sync.server.service.members import member_rows
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import (
    CatalogPut,
    ItemRow,
    MemberBalances,
    MembersPut,
    PairRequest,
    PairResult,
    PromotionPut,
    b64,
    unb64,
)

PAIR_CODE_TTL_S = 24 * 3600
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: a manager types it
SNAPSHOT_CHUNK = 1000
STORE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


# -- stores and pairing -----------------------------------------------------------------------------------------

def ensure_store(tx: Tx, store_id: str, name: str = "", region: str = "", demo: bool = False) -> None:
    tx.run("""INSERT INTO hq_stores (store_id, name, region, demo) VALUES (?, ?, ?, ?)
              ON CONFLICT (store_id) DO NOTHING""", (store_id, name or store_id, region, int(demo)))
    if region:
        ensure_region(tx, region)


def ensure_region(tx: Tx, region: str) -> None:
    tx.run("INSERT INTO hq_regions (region, created_at) VALUES (?, ?) ON CONFLICT (region) DO NOTHING",
           (region, now_text()))


def _code_hash(code: str) -> str:
    normal = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(normal.encode()).hexdigest()


def make_pair_code(db: HqDb, principal: Principal, store_id: str, ttl_s: int = PAIR_CODE_TTL_S) -> str:
    """A one-time code (e.g. `K7QM-3XDP`) that pairs one hub as `store_id` within `ttl_s`. A region
    manager makes codes for the stores of his regions only (a new store gets its region from an admin)."""
    require(principal, "stores.pair")
    if not STORE_ID.fullmatch(store_id):
        raise HqError(422, "bad_store_id", "a store id is 1–64 letters, digits, dot, dash or underscore")
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    code = f"{raw[:4]}-{raw[4:]}"
    expires = int(time.time()) + ttl_s
    with db.write() as tx:
        if principal.scoped:
            require_store(tx, principal, store_id)
        else:
            ensure_store(tx, store_id)
        tx.run("INSERT INTO hq_pair_codes (code_hash, store_id, expires_at) VALUES (?, ?, ?)",
               (_code_hash(code), store_id, expires))
        audit(tx, principal, "store.pair_code", f"store:{store_id}", None, {"expires_at": expires})
    return code


def pair(db: HqDb, req: PairRequest, private_key: bytes, public_key: bytes, demo_mode: bool, at: str) -> PairResult:
    """Register a hub's key for its store. Idempotent for the same key (a retried request); a new key
    starts the store's stream afresh (a replaced or wiped hub)."""
    try:
        key = unb64(req.public_key)
    except ValueError:
        raise HqError(400, "bad_key", "public_key is not base64") from None
    if len(key) != 32:
        raise HqError(400, "bad_key", "public_key must be a raw 32-byte Ed25519 key")
    with db.write() as tx:
        tx.lock("hq_stores", "store_id", [req.store_id])
        store = tx.one("SELECT public_key, base_seq, demo FROM hq_stores WHERE store_id = ?", (req.store_id,))
        if req.demo:
            if not demo_mode or store is None or not store[2]:
                raise HqError(403, "not_demo", "only a demo store pairs without a code, and only with a demo HQ")
        else:
            if not req.code:
                raise HqError(400, "code_required", "a pairing code is required: backroom hq pair-code --store ID")
            code = tx.one("SELECT store_id, expires_at, used_at, used_key FROM hq_pair_codes WHERE code_hash = ?",
                          (_code_hash(req.code),))
            if code is None or code[0] != req.store_id or int(code[1]) < int(time.time()):
                raise HqError(403, "bad_code", "the pairing code is unknown, expired or for another store")
            if code[2] is not None and (code[3] is None or bytes(code[3]) != key):
                raise HqError(403, "code_used", "the pairing code was already used")
            tx.run("UPDATE hq_pair_codes SET used_at = ?, used_key = ? WHERE code_hash = ?",
                   (at, key, _code_hash(req.code)))
        assert store is not None
        if store[0] is not None and bytes(store[0]) == key:  # the same hub asking again
            kept = [r[0] for r in tx.all("SELECT DISTINCT member_id FROM hq_member_ledger WHERE store_id = ? "
                                         "AND kind = 'opening'", (req.store_id,))]
            return PairResult(req.store_id, b64(public_key), int(store[1]), kept, lookup_key=pii.lookup_key(db))
        if store[0] is not None:
            _retire_stream(tx, req.store_id, at)
        tx.run("UPDATE hq_stores SET public_key = ?, base_seq = ?, acked_seq = 0, head_seq = ?, paired_at = ?, "
               "last_seen = ?, feed_cursor = 0 WHERE store_id = ?",
               (key, req.outbox_head, req.outbox_head, at, at, req.store_id))
        kept = _adopt_holdings(tx, req, at)
        _snapshot(tx, private_key, req.store_id, at)
    return PairResult(req.store_id, b64(public_key), req.outbox_head, kept, lookup_key=pii.lookup_key(db))


def _retire_stream(tx: Tx, store_id: str, at: str) -> None:
    """A store paired again with a new key: its old stream is kept under an archive name, and the
    escrow the old hub held goes back to the members' unallocated balance (that hub is gone)."""
    archive = f"{store_id}#{at}"
    # moved by insert and delete: distributed PostgreSQL refuses an UPDATE of a distribution column
    tx.run("""INSERT INTO hq_deltas (store_id, seq, kind, ref, day, amount, status, reason, payload, received_at)
              SELECT ?, seq, kind, ref, day, amount, status, reason, payload, received_at FROM hq_deltas
              WHERE store_id = ?""", (archive, store_id))
    tx.run("DELETE FROM hq_deltas WHERE store_id = ?", (store_id,))
    tx.run("DELETE FROM hq_escrow WHERE store_id = ?", (store_id,))
    tx.run("UPDATE hq_reclaims SET released = 0, answered_at = ? WHERE store_id = ? AND released IS NULL",
           (at, store_id))


def _adopt_holdings(tx: Tx, req: PairRequest, at: str) -> list[str]:
    """Holdings of members HQ does not know become HQ's opening balances, held by this store.
    Members HQ knows keep HQ's balance; the hub hands its local holdings of them back."""
    profiles = {m.member_id: m for m in req.members}
    kept = []
    for member_id, balance, points in req.holdings:
        if balance < 0 or points < 0:
            continue
        if tx.one("SELECT 1 FROM hq_members WHERE member_id = ?", (member_id,)) is not None:
            continue
        m = profiles.get(member_id)
        if m is None:
            continue
        pii.insert_member(tx, m, balance=balance, points=points)
        for ledger, amount in (("value", balance), ("points", points)):
            if amount:
                tx.run("""INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, store_id, ref, at)
                          VALUES (?, ?, ?, 'opening', ?, 'pairing', ?)""",
                       (member_id, ledger, amount, req.store_id, at))
                tx.run("INSERT INTO hq_escrow (member_id, store_id, ledger, outstanding) VALUES (?, ?, ?, ?)",
                       (member_id, req.store_id, ledger, amount))
        kept.append(member_id)
    return kept


def _snapshot(tx: Tx, private_key: bytes, store_id: str, at: str) -> None:
    """A newly paired store's opening feed: catalog, tiers, members, promotions, prices in force."""
    categories = [(str(r[0]), r[1], str(r[2]), str(r[3])) for r in
                  tx.all("SELECT category_id, parent_id, name_zh, name_en FROM hq_categories ORDER BY category_id")]
    items = [ItemRow(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), r[7], r[8],
                     msgspec.json.decode(r[9], type=list[str]),
                     msgspec.json.decode(r[10], type=list[tuple[str, str]]), bool(r[11]))
             for r in tx.all("""SELECT sku, name_zh, name_en, category_id, unit, price, tax_rate_bp, plu, brand, tags,
                                barcodes, active FROM hq_items ORDER BY sku""")]
    if categories or items:
        append_feed(tx, private_key, store_id, CatalogPut(categories=categories, items=[]), at)
        for i in range(0, len(items), SNAPSHOT_CHUNK):
            append_feed(tx, private_key, store_id, CatalogPut(items=items[i:i + SNAPSHOT_CHUNK]), at)
    tiers = tier_rows(tx)  # benefits and rules
    members = member_rows(tx, None)
    append_feed(tx, private_key, store_id, MembersPut(tiers=tiers, members=[]), at)
    for i in range(0, len(members), SNAPSHOT_CHUNK):
        append_feed(tx, private_key, store_id, MembersPut(members=members[i:i + SNAPSHOT_CHUNK]), at)
    base = tx.one("SELECT base_seq FROM hq_stores WHERE store_id = ?", (store_id,))
    balances = [(str(r[0]), int(r[1]), int(r[2])) for r in
                tx.all("SELECT member_id, balance, points FROM hq_members ORDER BY member_id")]
    for i in range(0, len(balances), SNAPSHOT_CHUNK):  # the chain-wide figures its lookups show
        append_feed(tx, private_key, store_id, MemberBalances(rows=balances[i:i + SNAPSHOT_CHUNK], as_of=at,
                                                              store=store_id, acked=int(base[0]) if base else 0), at)
    for rule_id, rule, active in tx.all("SELECT rule_id, rule, active FROM hq_promotions ORDER BY rule_id"):
        append_feed(tx, private_key, store_id, PromotionPut(rule_id=rule_id, rule=rule, active=bool(active)), at)
    coupon_snapshot(tx, private_key, store_id, at)




def store_key(db: HqDb, store_id: str) -> bytes | None:
    with db.read() as tx:
        row = tx.one("SELECT public_key FROM hq_stores WHERE store_id = ?", (store_id,))
    return bytes(row[0]) if row and row[0] is not None else None


def store_keys(db: HqDb) -> dict[str, bytes]:
    """Every paired store's key (a worker's key cache at start)."""
    with db.read() as tx:
        rows = tx.all("SELECT store_id, public_key FROM hq_stores WHERE public_key IS NOT NULL")
    return {str(r[0]): bytes(r[1]) for r in rows}


# PostgreSQL: every store's update in one statement, and only the rows no one holds (SKIP LOCKED): a batch holds
# its store's row from its first statement to its commit, and a flush that waited for it held a thousand other
# stores' rows meanwhile, so their batches queued behind the flush. What it leaves out is the caller's to retry.
_PG_STORES_UPDATE = """
WITH v AS (SELECT r->>0 AS store_id, r->>1 AS value FROM jsonb_array_elements(?::jsonb) r),
     l AS (SELECT s.store_id FROM hq_stores s JOIN v ON v.store_id = s.store_id FOR UPDATE OF s SKIP LOCKED),
     u AS (UPDATE hq_stores s SET {set} FROM v JOIN l ON l.store_id = v.store_id WHERE s.store_id = v.store_id{cond})
SELECT store_id FROM l"""


def _update_stores(tx: Tx, pairs: list[tuple[str, Any]], assign: str, cond: str, sqlite_sql: str,
                   sqlite_rows: list[tuple[Any, ...]]) -> list[str]:
    if tx.dialect != "postgresql":
        tx.many(sqlite_sql, sqlite_rows)
        return []
    done = {str(r[0]) for r in tx.all(_PG_STORES_UPDATE.format(set=assign, cond=cond),
                                      (msgspec.json.encode(pairs).decode(),))}
    return [store_id for store_id, _ in pairs if store_id not in done]


def record_feed_cursors(db: HqDb, cursors: list[tuple[str, int]]) -> list[str]:
    """Each store's feed cursor ((store_id, the `after` of its poll): every entry up to it is applied there);
    never moves back (a late poll of an older cursor changes nothing). Returns the stores left out because a
    batch held their row (PostgreSQL): the caller keeps them for its next flush."""
    with db.write() as tx:
        return _update_stores(tx, cursors, "feed_cursor = (v.value)::bigint", " AND s.feed_cursor < (v.value)::bigint",
                              "UPDATE hq_stores SET feed_cursor = ? WHERE store_id = ? AND feed_cursor < ?",
                              [(cursor, store_id, cursor) for store_id, cursor in cursors])


def record_contacts(db: HqDb, contacts: list[tuple[str, str]]) -> list[str]:
    """When stores last called HQ ((store_id, at), a feed poll): what the dashboard's "last heard" shows.
    Returns the stores left out because a batch held their row (PostgreSQL), as `record_feed_cursors`."""
    with db.write() as tx:
        return _update_stores(tx, contacts, "last_contact = v.value", "",
                              "UPDATE hq_stores SET last_contact = ? WHERE store_id = ?",
                              [(at, store_id) for store_id, at in contacts])


def store_acked(db: HqDb, store_id: str) -> int:
    with db.read() as tx:
        row = tx.one("SELECT acked_seq FROM hq_stores WHERE store_id = ?", (store_id,))
    return int(row[0]) if row else 0


def list_stores(db: HqDb, principal: Principal) -> list[dict[str, Any]]:
    """The stores in the principal's scope with their sync state (quarantined = open quarantined
    deltas, those nobody has resolved)."""
    require(principal, "stores.read")
    where, args = scope_sql(principal, "s.store_id")
    with db.read() as tx:
        rows = tx.all(f"""SELECT s.store_id, s.name, s.region, s.acked_seq, s.head_seq, s.last_seen, s.sales,
                                 s.paired_at,
                                 (SELECT count(*) FROM hq_deltas d WHERE d.store_id = s.store_id
                                    AND d.status = 'quarantined' AND NOT EXISTS (SELECT 1 FROM hq_quarantine_notes q
                                      WHERE q.store_id = d.store_id AND q.seq = d.seq)),
                                 (SELECT count(*) FROM hq_digest_checks c WHERE c.store_id = s.store_id
                                    AND c.status = 'mismatch'),
                                 s.timezone, s.address, s.last_contact
                          FROM hq_stores s WHERE {where} ORDER BY s.store_id""", args)
    return [{"store_id": r[0], "name": r[1], "region": r[2], "acked_seq": int(r[3]),
             "lag": max(0, int(r[4]) - int(r[3])), "last_seen": r[5], "sales": int(r[6]), "paired": r[7] is not None,
             "quarantined": int(r[8]), "digest_mismatches": int(r[9]), "timezone": r[10], "address": r[11],
             "last_contact": r[12]}
            for r in rows]


def store_view(db: HqDb, principal: Principal, store_id: str) -> dict[str, Any]:
    require(principal, "stores.read")
    with db.read() as tx:
        require_store(tx, principal, store_id)
    found = [s for s in list_stores(db, principal) if s["store_id"] == store_id]
    if not found:
        raise HqError(404, "unknown_store", f"no store {store_id[:64]}")
    return found[0]


def quarantine(db: HqDb, principal: Principal, store_id: str) -> list[dict[str, Any]]:
    """The store's quarantined deltas, each with its resolution if someone resolved it."""
    require(principal, "stores.read")
    with db.read() as tx:
        require_store(tx, principal, store_id)
        rows = tx.all("""SELECT d.seq, d.kind, d.ref, d.reason, d.received_at, q.state, q.note, q.actor, q.at
                         FROM hq_deltas d LEFT JOIN hq_quarantine_notes q ON q.store_id = d.store_id AND q.seq = d.seq
                         WHERE d.store_id = ? AND d.status = 'quarantined' ORDER BY d.seq""", (store_id,))
    return [{"seq": int(r[0]), "kind": r[1], "ref": r[2], "reason": r[3], "received_at": r[4],
             "resolved": None if r[5] is None else {"note": r[6], "by": r[7], "at": r[8]}} for r in rows]


class StoreProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A store's profile; fields left out stay as they are."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=80)] | None = None
    region: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    address: Annotated[str, msgspec.Meta(max_length=200)] | None = None


def valid_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def update_profile(db: HqDb, principal: Principal, store_id: str, profile: StoreProfile, at: str) -> dict[str, Any]:
    """Change a store's name, region, timezone or address. A region manager edits his stores and may
    move one only to another of his regions."""
    require(principal, "stores.manage")
    if profile.timezone is not None and not valid_timezone(profile.timezone):
        raise HqError(422, "bad_timezone", "an IANA time zone such as Asia/Shanghai")
    with db.write() as tx:
        require_store(tx, principal, store_id)
        tx.lock("hq_stores", "store_id", [store_id])
        row = tx.one("SELECT name, region, timezone, address FROM hq_stores WHERE store_id = ?", (store_id,))
        if row is None:
            raise HqError(404, "unknown_store", f"no store {store_id[:64]}")
        before = {"name": row[0], "region": row[1], "timezone": row[2], "address": row[3]}
        after = {**before, **{k: v.strip() for k, v in msgspec.structs.asdict(profile).items() if v is not None}}
        if not after["name"] or not after["region"]:
            raise HqError(422, "invalid_field", "a store keeps a name and a region")
        if after["region"] != before["region"]:
            require_region(principal, after["region"])
            ensure_region(tx, after["region"])
        if after != before:
            tx.run("UPDATE hq_stores SET name = ?, region = ?, timezone = ?, address = ? WHERE store_id = ?",
                   (after["name"], after["region"], after["timezone"], after["address"], store_id))
            audit(tx, principal, "store.profile", f"store:{store_id}", before, after, at=at)
    return {"store_id": store_id, **after}


def resolve_quarantined(db: HqDb, principal: Principal, store_id: str, seq: int, note: str, at: str) -> dict[str, Any]:
    """Someone has dealt with a quarantined delta (e.g. booked it by hand at HQ): it stays in
    `hq_deltas` as received, and leaves the open count."""
    require(principal, "stores.manage")
    with db.write() as tx:
        require_store(tx, principal, store_id)
        row = tx.one("SELECT kind, ref, reason FROM hq_deltas WHERE store_id = ? AND seq = ? "
                     "AND status = 'quarantined'", (store_id, seq))
        if row is None:
            raise HqError(404, "not_quarantined", f"store {store_id[:64]} has no quarantined delta {seq}")
        done = tx.run("""INSERT INTO hq_quarantine_notes (store_id, seq, state, note, actor, at)
                         VALUES (?, ?, 'resolved', ?, ?, ?) ON CONFLICT (store_id, seq) DO NOTHING""",
                      (store_id, seq, note, principal.username, at))
        if not done:
            raise HqError(409, "already_resolved", f"delta {seq} of {store_id[:64]} is resolved already")
        audit(tx, principal, "store.quarantine_resolve", f"store:{store_id}",
              {"seq": seq, "kind": row[0], "ref": row[1], "reason": row[2]}, {"seq": seq, "note": note}, at=at)
    return {"store_id": store_id, "seq": seq, "resolved": True}
