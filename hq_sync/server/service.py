"""HQ's operations over its database: keys, the signed feed, pairing, escrow, prices, digests, reports.

Every function takes the `HqDb` (or an open `Tx`) and does one thing in one transaction. The
HTTP layer (`app.py`) only decodes, authenticates and calls these.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from edge.auth.passwords import hash_secret, verify_secret
from edge.catalog.barcodes import classify
from edge.promotions.rules import RESERVED_PREFIXES, promotion_decoder, promotion_encoder
from hq_sync.server.db import HqDb, Tx
from hq_sync.wire import (
    AuthorizeRequest,
    CatalogPut,
    DigestRow,
    DigestVerdict,
    EscrowGrant,
    EscrowReclaim,
    FeedBody,
    FeedEntry,
    FeedPage,
    ItemRow,
    Ledger,
    MemberRow,
    MembersPut,
    PairRequest,
    PairResult,
    PriceChange,
    PromotionPut,
    TierRow,
    b64,
    feed_body_encoder,
    new_key,
    sign_entry,
    unb64,
)

DEMO_DIR = Path(__file__).resolve().parents[2] / "edge" / "seed" / "demo"
DEMO_STORES = (("demo-001", "演示一店 Demo store 1", "华东 East"), ("demo-002", "演示二店 Demo store 2", "华北 North"))
PAIR_CODE_TTL_S = 24 * 3600
TOKEN_TTL_S = 12 * 3600
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: a manager types it
SNAPSHOT_CHUNK = 1000
PRICE_CHUNK = 5000


class HqError(Exception):
    """A refusal the HTTP layer turns into a 4xx {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat(timespec="milliseconds")


# -- keys and counters ---------------------------------------------------------------------------------

def hq_key(db: HqDb) -> tuple[bytes, bytes]:
    """HQ's Ed25519 key pair, made on first use and kept in the database."""
    with db.write() as tx:
        row = tx.one("SELECT private_key, public_key FROM hq_keys WHERE id = 1")
        if row is None:
            private, public = new_key()
            tx.run("INSERT INTO hq_keys (id, private_key, public_key) VALUES (1, ?, ?)", (private, public))
            return private, public
        return bytes(row[0]), bytes(row[1])


def next_counter(tx: Tx, name: str) -> int:
    """The next value of a named counter. The row stays locked until commit, so feed entries commit
    in sequence order and a reader never skips one that commits late."""
    row = tx.one("""INSERT INTO hq_counters (name, value) VALUES (?, 1)
                    ON CONFLICT (name) DO UPDATE SET value = hq_counters.value + 1 RETURNING value""", (name,))
    assert row is not None
    return int(row[0])


# -- the feed ------------------------------------------------------------------------------------------------

def append_feed(tx: Tx, private_key: bytes, store: str, body: FeedBody, at: str) -> int:
    seq = next_counter(tx, "feed")
    data = feed_body_encoder.encode(body)
    entry = sign_entry(private_key, seq, store, at, data)
    tx.run("INSERT INTO hq_feed (seq, store_id, kind, at, body, sig) VALUES (?, ?, ?, ?, ?, ?)",
           (seq, store, type(body).__struct_config__.tag, at, data, entry.sig))
    return seq


def read_feed(db: HqDb, store_id: str, after: int, limit: int = 200) -> FeedPage:
    with db.read() as tx:
        rows = tx.all("""SELECT seq, store_id, at, body, sig FROM hq_feed WHERE seq > ? AND store_id IN ('*', ?)
                         ORDER BY seq LIMIT ?""", (after, store_id, limit))
        head_row = tx.one("SELECT max(seq) FROM hq_feed WHERE store_id IN ('*', ?)", (store_id,))
    entries = [FeedEntry(int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), bytes(r[4])) for r in rows]
    return FeedPage(entries=entries, head=int(head_row[0] or 0) if head_row else 0)


# -- admin logins ---------------------------------------------------------------------------------------------

def add_user(tx: Tx, username: str, password: str, role: str = "hq_admin") -> None:
    tx.run("INSERT INTO hq_users (username, password_hash, role) VALUES (?, ?, ?) ON CONFLICT (username) DO NOTHING",
           (username, hash_secret(password), role))


def login(db: HqDb, username: str, password: str) -> tuple[str, str, int]:
    with db.read() as tx:
        row = tx.one("SELECT password_hash, role FROM hq_users WHERE username = ?", (username,))
    if row is None or not verify_secret(password, row[0]):
        raise HqError(401, "bad_credentials", "unknown user or wrong password")
    token = secrets.token_urlsafe(32)
    expires = int(time.time()) + TOKEN_TTL_S
    with db.write() as tx:
        tx.run("DELETE FROM hq_tokens WHERE expires_at < ?", (int(time.time()),))
        tx.run("INSERT INTO hq_tokens (token, username, expires_at) VALUES (?, ?, ?)", (token, username, expires))
    return token, str(row[1]), expires


def check_token(db: HqDb, token: str) -> str | None:
    with db.read() as tx:
        row = tx.one("SELECT username FROM hq_tokens WHERE token = ? AND expires_at > ?", (token, int(time.time())))
    return str(row[0]) if row else None


# -- stores and pairing -----------------------------------------------------------------------------------------

def ensure_store(tx: Tx, store_id: str, name: str = "", region: str = "", demo: bool = False) -> None:
    tx.run("""INSERT INTO hq_stores (store_id, name, region, demo) VALUES (?, ?, ?, ?)
              ON CONFLICT (store_id) DO NOTHING""", (store_id, name or store_id, region, int(demo)))


def _code_hash(code: str) -> str:
    normal = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(normal.encode()).hexdigest()


def make_pair_code(db: HqDb, store_id: str, ttl_s: int = PAIR_CODE_TTL_S) -> str:
    """A one-time code (e.g. `K7QM-3XDP`) that pairs one hub as `store_id` within `ttl_s`."""
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    code = f"{raw[:4]}-{raw[4:]}"
    with db.write() as tx:
        ensure_store(tx, store_id)
        tx.run("INSERT INTO hq_pair_codes (code_hash, store_id, expires_at) VALUES (?, ?, ?)",
               (_code_hash(code), store_id, int(time.time()) + ttl_s))
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
            return PairResult(req.store_id, b64(public_key), int(store[1]), kept)
        if store[0] is not None:
            _retire_stream(tx, req.store_id, at)
        tx.run("UPDATE hq_stores SET public_key = ?, base_seq = ?, acked_seq = 0, head_seq = ?, paired_at = ?, "
               "last_seen = ? WHERE store_id = ?", (key, req.outbox_head, req.outbox_head, at, at, req.store_id))
        kept = _adopt_holdings(tx, req, at)
        _snapshot(tx, private_key, req.store_id, at)
    return PairResult(req.store_id, b64(public_key), req.outbox_head, kept)


def _retire_stream(tx: Tx, store_id: str, at: str) -> None:
    """A store paired again with a new key: its old stream is kept under an archive name, and the
    escrow the old hub held goes back to the members' unallocated balance (that hub is gone)."""
    archive = f"{store_id}#{at}"
    tx.run("UPDATE hq_deltas SET store_id = ? WHERE store_id = ?", (archive, store_id))
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
        tx.run("""INSERT INTO hq_members (member_id, tier, phone, card_no, name, birthday, tags, home_store, created_at,
                  balance, points) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
               (m.member_id, m.tier, m.phone, m.card_no, m.name, m.birthday, msgspec.json.encode(m.tags).decode(),
                m.home_store, m.created_at, balance, points))
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
    tiers = [TierRow(*r) for r in tx.all("""SELECT tier, name_zh, name_en, discount_bp, points_multiplier_pct,
                                             min_points FROM hq_tiers ORDER BY tier""")]
    members = _member_rows(tx, None)
    append_feed(tx, private_key, store_id, MembersPut(tiers=tiers, members=[]), at)
    for i in range(0, len(members), SNAPSHOT_CHUNK):
        append_feed(tx, private_key, store_id, MembersPut(members=members[i:i + SNAPSHOT_CHUNK]), at)
    for rule_id, rule, active in tx.all("SELECT rule_id, rule, active FROM hq_promotions ORDER BY rule_id"):
        append_feed(tx, private_key, store_id, PromotionPut(rule_id=rule_id, rule=rule, active=bool(active)), at)
    from hq_sync.server.coupons import snapshot as coupon_snapshot

    coupon_snapshot(tx, private_key, store_id, at)


def _member_rows(tx: Tx, member_id: str | None) -> list[MemberRow]:
    sql = "SELECT member_id, tier, phone, card_no, name, birthday, tags, home_store, created_at FROM hq_members"
    rows = tx.all(sql + " WHERE member_id = ?", (member_id,)) if member_id else tx.all(sql + " ORDER BY member_id")
    return [MemberRow(r[0], r[1], r[2], r[3], r[4], r[5], msgspec.json.decode(r[6], type=list[str]), r[7], r[8])
            for r in rows]


def store_key(db: HqDb, store_id: str) -> bytes | None:
    with db.read() as tx:
        row = tx.one("SELECT public_key FROM hq_stores WHERE store_id = ?", (store_id,))
    return bytes(row[0]) if row and row[0] is not None else None


def store_acked(db: HqDb, store_id: str) -> int:
    with db.read() as tx:
        row = tx.one("SELECT acked_seq FROM hq_stores WHERE store_id = ?", (store_id,))
    return int(row[0]) if row else 0


def list_stores(db: HqDb) -> list[dict[str, Any]]:
    with db.read() as tx:
        rows = tx.all("""SELECT s.store_id, s.name, s.region, s.acked_seq, s.head_seq, s.last_seen, s.sales,
                                s.paired_at,
                                (SELECT count(*) FROM hq_deltas d WHERE d.store_id = s.store_id
                                   AND d.status = 'quarantined'),
                                (SELECT count(*) FROM hq_digest_checks c WHERE c.store_id = s.store_id
                                   AND c.status = 'mismatch')
                         FROM hq_stores s ORDER BY s.store_id""")
    return [{"store_id": r[0], "name": r[1], "region": r[2], "acked_seq": int(r[3]),
             "lag": max(0, int(r[4]) - int(r[3])), "last_seen": r[5], "sales": int(r[6]), "paired": r[7] is not None,
             "quarantined": int(r[8]), "digest_mismatches": int(r[9])} for r in rows]


def quarantine(db: HqDb, store_id: str) -> list[dict[str, Any]]:
    with db.read() as tx:
        rows = tx.all("""SELECT seq, kind, ref, reason, received_at FROM hq_deltas
                         WHERE store_id = ? AND status = 'quarantined' ORDER BY seq""", (store_id,))
    return [{"seq": int(r[0]), "kind": r[1], "ref": r[2], "reason": r[3], "received_at": r[4]} for r in rows]


# -- members and escrow -----------------------------------------------------------------------------------------

def member_view(db: HqDb, member_id: str) -> dict[str, Any]:
    with db.read() as tx:
        row = tx.one("SELECT member_id, tier, balance, points, home_store FROM hq_members WHERE member_id = ?",
                     (member_id,))
        if row is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        escrow = tx.all("SELECT store_id, ledger, outstanding FROM hq_escrow WHERE member_id = ? AND outstanding > 0 "
                        "ORDER BY store_id, ledger", (member_id,))
    held: dict[str, dict[str, int]] = {}
    for store_id, ledger, outstanding in escrow:
        held.setdefault(store_id, {"value": 0, "points": 0})[ledger] = int(outstanding)
    allocated_value = sum(h["value"] for h in held.values())
    allocated_points = sum(h["points"] for h in held.values())
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


def grant(db: HqDb, private_key: bytes, member_id: str, store_id: str, ledger: Ledger, amount: int,
          at: str) -> EscrowGrant:
    """HQ sets aside `amount` of the member's unallocated balance (or points) for a store."""
    if amount <= 0:
        raise HqError(422, "bad_amount", "a grant is a positive amount")
    with db.write() as tx:
        tx.lock("hq_members", "member_id", [member_id])
        if tx.one("SELECT 1 FROM hq_stores WHERE store_id = ? AND public_key IS NOT NULL", (store_id,)) is None:
            raise HqError(404, "unknown_store", f"no paired store {store_id[:64]}")
        free = _unallocated(tx, member_id, ledger)
        if free is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        if free < amount:
            raise HqError(402, "insufficient_balance", f"member {member_id} has {free} unallocated", available=free)
        members = _member_rows(tx, member_id)
        append_feed(tx, private_key, store_id, MembersPut(members=members), at)  # the store may not know them yet
        return _grant(tx, private_key, member_id, store_id, ledger, amount, None, at)


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


def reclaim(db: HqDb, private_key: bytes, member_id: str, ledger: str, amount: int | None, at: str) -> int:
    """Admin: take escrow back from every store (all of it unless `amount`)."""
    with db.write() as tx:
        tx.lock("hq_members", "member_id", [member_id])
        held = tx.one("SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? AND ledger = ?",
                      (member_id, ledger))
        everything = int(held[0] or 0) if held else 0
        return _reclaim(tx, private_key, member_id, ledger, amount if amount is not None else everything,
                        exclude=None, at=at)


# -- prices and promotions ----------------------------------------------------------------------------------------

def set_prices(db: HqDb, private_key: bytes, prices: list[tuple[str, int]], stores: list[str] | None,
               effective_at: str | None, at: str) -> list[int]:
    """Record HQ's prices and put them on the feed (chunks of PRICE_CHUNK) for every store or the named ones."""
    if any(p < 0 for _, p in prices):
        raise HqError(422, "bad_price", "prices are non-negative fen")
    targets = stores or ["*"]
    seqs: list[int] = []
    with db.write() as tx:
        for store in targets:
            for i in range(0, len(prices), PRICE_CHUNK):
                chunk = prices[i:i + PRICE_CHUNK]
                seq = append_feed(tx, private_key, store, PriceChange(prices=chunk, effective_at=effective_at), at)
                seqs.append(seq)
                tx.many("""INSERT INTO hq_prices (sku, store_id, price, effective_at, set_at, feed_seq)
                           VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sku, store_id) DO UPDATE SET price = excluded.price,
                           effective_at = excluded.effective_at, set_at = excluded.set_at,
                           feed_seq = excluded.feed_seq""",
                        [(sku, store, price, effective_at, at, seq) for sku, price in chunk])
        if stores is None and effective_at is None:
            tx.many("UPDATE hq_items SET price = ? WHERE sku = ?", [(price, sku) for sku, price in prices])
    return seqs


def put_promotion(db: HqDb, private_key: bytes, rule_json: bytes, at: str) -> dict[str, Any]:
    try:
        promo = promotion_decoder.decode(rule_json)
    except msgspec.DecodeError as exc:
        raise HqError(400, "invalid_field", str(exc)) from None
    if promo.rule_id.startswith(RESERVED_PREFIXES):
        raise HqError(422, "reserved_rule_id", "rule ids starting with tier: or member_price are the hubs' own")
    text = promotion_encoder.encode(promo).decode()
    with db.write() as tx:
        tx.run("""INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES (?, ?, 1, ?)
                  ON CONFLICT (rule_id) DO UPDATE SET rule = excluded.rule, active = 1,
                  updated_at = excluded.updated_at""",
               (promo.rule_id, text, at))
        seq = append_feed(tx, private_key, "*", PromotionPut(rule_id=promo.rule_id, rule=text), at)
    return {"rule_id": promo.rule_id, "feed_seq": seq, "rule": msgspec.json.decode(text)}


# -- digests -------------------------------------------------------------------------------------------------------

def check_digests(db: HqDb, store_id: str, rows: list[DigestRow], upto: int, at: str) -> DigestVerdict:
    """Compare the store's daily digests with HQ's (over applied deltas up to the store's ack); a day
    that differs is recorded as a mismatch and its sequence range is asked for again."""
    days = sorted({r.day for r in rows})
    theirs: dict[tuple[str, str], DigestRow] = {(r.day, r.kind): r for r in rows}
    mismatched: list[str] = []
    resend: list[tuple[int, int]] = []
    with db.write() as tx:
        ours: dict[tuple[str, str], tuple[int, int]] = {}
        for day in days:
            for kind, count, total in tx.all(
                    """SELECT kind, count(*), coalesce(sum(amount), 0) FROM hq_deltas
                       WHERE store_id = ? AND day = ? AND status = 'applied' AND seq <= ? GROUP BY kind""",
                    (store_id, day, upto)):
                ours[(day, str(kind))] = (int(count), int(total))
        for day in days:
            keys = {k for k in theirs if k[0] == day} | {k for k in ours if k[0] == day}
            diff = [f"{k[1]}: store {theirs[k].count}/{theirs[k].total} hq {ours.get(k, (0, 0))[0]}/"
                    f"{ours.get(k, (0, 0))[1]}" if k in theirs else f"{k[1]}: only at hq"
                    for k in sorted(keys)
                    if k not in theirs or (theirs[k].count, theirs[k].total) != ours.get(k, (0, 0))]
            if diff:
                mismatched.append(day)
                span = [r for r in rows if r.day == day]
                resend.append((min(r.first_seq for r in span), max(r.last_seq for r in span)))
            tx.run("""INSERT INTO hq_digest_checks (store_id, day, status, detail, checked_at, mismatches)
                      VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, day) DO UPDATE SET status = excluded.status,
                      detail = excluded.detail, checked_at = excluded.checked_at,
                      mismatches = hq_digest_checks.mismatches + excluded.mismatches""",
                   (store_id, day, "mismatch" if diff else "match", "; ".join(diff)[:1000], at, 1 if diff else 0))
    return DigestVerdict(mismatched=mismatched, resend=resend)


def digest_checks(db: HqDb, store_id: str) -> list[dict[str, Any]]:
    with db.read() as tx:
        rows = tx.all("SELECT day, status, detail, checked_at, mismatches FROM hq_digest_checks WHERE store_id = ? "
                      "ORDER BY day", (store_id,))
    return [{"day": r[0], "status": r[1], "detail": r[2], "checked_at": r[3], "mismatches": int(r[4])} for r in rows]


# -- reports ----------------------------------------------------------------------------------------------------------

def report(db: HqDb, by: str) -> list[dict[str, Any]]:
    """Chain reports: store ranking, sales by category, sales by region."""
    with db.read() as tx:
        if by == "stores":
            rows = tx.all("""SELECT s.store_id, s.region, count(x.sale_id), coalesce(sum(x.total), 0)
                             FROM hq_stores s LEFT JOIN hq_sales x ON x.store_id = s.store_id
                             GROUP BY s.store_id, s.region ORDER BY 4 DESC, s.store_id""")
            return [{"rank": n, "store_id": r[0], "region": r[1], "sales": int(r[2]), "total": int(r[3])}
                    for n, r in enumerate(rows, start=1)]
        if by == "categories":
            rows = tx.all("""SELECT coalesce(i.category_id, '-'), count(*), coalesce(sum(l.net), 0)
                             FROM hq_sale_lines l LEFT JOIN hq_items i ON i.sku = l.sku
                             GROUP BY coalesce(i.category_id, '-') ORDER BY 3 DESC, 1""")
            return [{"category": r[0], "lines": int(r[1]), "net": int(r[2])} for r in rows]
        if by == "regions":
            rows = tx.all("""SELECT s.region, count(x.sale_id), coalesce(sum(x.total), 0)
                             FROM hq_sales x JOIN hq_stores s ON s.store_id = x.store_id
                             GROUP BY s.region ORDER BY 3 DESC, 1""")
            return [{"region": r[0], "sales": int(r[1]), "total": int(r[2])} for r in rows]
    raise HqError(404, "unknown_report", f"no report {by[:32]}; stores, categories or regions")


# -- the demo chain ---------------------------------------------------------------------------------------------

def _csv(name: str) -> list[dict[str, str]]:
    with (DEMO_DIR / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def seed_demo(db: HqDb, at: str) -> bool:
    """Seed an empty HQ with the demo chain: two stores, the demo catalog, tiers, members, promotions
    and the `hq` / `hq-demo` login. False if it already holds a catalog."""
    with db.write() as tx:
        if tx.one("SELECT 1 FROM hq_items LIMIT 1") is not None:
            return False
        for store_id, name, region in DEMO_STORES:
            ensure_store(tx, store_id, name, region, demo=True)
        add_user(tx, "hq", "hq-demo")
        tx.many("INSERT INTO hq_categories (category_id, parent_id, name_zh, name_en) VALUES (?, ?, ?, ?)",
                [(r["category_id"], r["parent_id"] or None, r["name_zh"], r["name_en"])
                 for r in _csv("categories.csv")])
        tx.many("""INSERT INTO hq_tiers (tier, name_zh, name_en, discount_bp, points_multiplier_pct, min_points)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                [(r["tier"], r["name_zh"], r["name_en"], int(r["discount_bp"]), int(r["points_multiplier_pct"]),
                  int(r["min_points"])) for r in _csv("tiers.csv")])
        items = []
        for r in _csv("items.csv"):
            codes = [(c, classify(c) or "ean13") for c in filter(None, r["barcodes"].split("|"))]
            tags = [t for t in r["tags"].split("|") if t] if r["tags"] else []
            items.append((r["sku"], r["name_zh"], r["name_en"], r["category_id"], r["unit"], int(r["price"]),
                          int(r["tax_rate_bp"]), r["plu"] or None, r["brand"], msgspec.json.encode(tags).decode(),
                          msgspec.json.encode(codes).decode()))
        tx.many("""INSERT INTO hq_items (sku, name_zh, name_en, category_id, unit, price, tax_rate_bp, plu, brand, tags,
                   barcodes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", items)
        for r in _csv("members.csv"):
            tags = [t for t in r["tags"].split("|") if t] if r["tags"] else []
            tx.run("""INSERT INTO hq_members (member_id, tier, phone, card_no, name, birthday, tags, home_store,
                      created_at, balance, points) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                   (r["member_id"], r["tier"], r["phone"] or None, r["card_no"] or None, r["name"],
                    r["birthday"] or None, msgspec.json.encode(tags).decode(), DEMO_STORES[0][0], at,
                    int(r["balance"]), int(r["points"])))
            for ledger, amount in (("value", int(r["balance"])), ("points", int(r["points"]))):
                if amount:
                    tx.run("""INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, store_id, ref, at)
                              VALUES (?, ?, ?, 'opening', NULL, 'seed', ?)""", (r["member_id"], ledger, amount, at))
        promos = msgspec.json.decode((DEMO_DIR.parent / "demo" / "promotions.json").read_bytes())
        for rule in promos.get("promotions", []):
            tx.run("INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES (?, ?, 1, ?)",
                   (rule["rule_id"], msgspec.json.encode(rule).decode(), at))
        tx.run("INSERT INTO hq_meta (key, value) VALUES ('demo', '1') ON CONFLICT (key) DO NOTHING")
    return True


def is_demo(db: HqDb) -> bool:
    with db.read() as tx:
        return tx.one("SELECT 1 FROM hq_meta WHERE key = 'demo'") is not None
