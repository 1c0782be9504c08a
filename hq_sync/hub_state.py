"""The hub's side of HQ sync, in the hub's SQLite: pairing state, batches, acks, the feed, escrow, digests.

Functions over a `sqlite3.Connection`; the ones that write run inside the hub's single writer
(`db.write`), so each applies in one transaction with whatever else it touches.

When paired, a member's points and stored value in the hub's ledgers are this store's *escrow*:
what it may spend without asking HQ. Top-ups, refunds and points earned here add to it at once,
spends take from it, HQ's grants add, HQ's reclaims take back (an `EscrowReleaseDelta` goes up in
the same transaction). `member_ledger.post` already refuses to go below zero, so a spend beyond
the escrow is refused at the till with the usual 402, online or not. HQ holds the member's real
balance and never grants more than it has (docs/sync.md).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from typing import Any

import msgspec

from edge.engage import referrals
from edge.members import chainwide, pii, privacy
from edge.members import ledger as member_ledger
from edge.members import tiers as member_tiers
from edge.members.tiering import TierDef
from edge.outbox import queue as outbox
from edge.promotions.repository import bump_version
from edge.promotions.rules import RESERVED_PREFIXES, promotion_decoder
from edge.stock.ledger import Actor
from hq_sync import transfers
from hq_sync.coupons import put_coupon
from hq_sync.protocol import (
    Delta,
    EscrowReleaseDelta,
    MemberDelta,
    ReturnDelta,
    SaleDelta,
    StockDelta,
    TopupDelta,
    TransferReceivedDelta,
    TransferRequestDelta,
    TransferShippedDelta,
    delta_decoder,
)
from hq_sync.wire import (
    Ack,
    Batch,
    CatalogPut,
    CouponPut,
    DigestRow,
    EscrowGrant,
    EscrowReclaim,
    FeedBody,
    FeedEntry,
    ItemRow,
    MemberBalances,
    MemberErased,
    MemberMerged,
    MemberRow,
    MembersPut,
    OutRow,
    PairResult,
    PriceChange,
    PriceListPut,
    PromotionPut,
    ReferralPut,
    TierRow,
    TransferState,
    entry_problem,
    feed_body_decoder,
    unb64,
)

log = logging.getLogger(__name__)
SYNC_ACTOR = Actor(user_id="hq-sync")


class SyncState(msgspec.Struct, frozen=True):
    store_id: str
    hq_url: str
    private_key: bytes
    public_key: bytes
    hq_public_key: bytes
    base_seq: int
    acked_seq: int
    feed_cursor: int
    feed_head: int
    paired_at: str
    last_push_at: str | None
    last_pull_at: str | None
    last_digest_at: str | None


_STATE_COLUMNS = ("store_id, hq_url, private_key, public_key, hq_public_key, base_seq, acked_seq, feed_cursor, "
                  "feed_head, paired_at, last_push_at, last_pull_at, last_digest_at")


def load_state(conn: sqlite3.Connection) -> SyncState | None:
    row = conn.execute(f"SELECT {_STATE_COLUMNS} FROM sync_state WHERE id = 1").fetchone()
    if row is None:
        return None
    values: list[Any] = [bytes(v) if isinstance(v, memoryview) else v for v in tuple(row)]
    return SyncState(*values)


def is_paired(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sync_state WHERE id = 1").fetchone() is not None


def outbox_head(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0])


# -- pairing -----------------------------------------------------------------------------------------

def holdings(conn: sqlite3.Connection) -> tuple[list[tuple[str, int, int]], list[MemberRow]]:
    """Members with points or stored value here, and their profiles (sent to HQ when pairing)."""
    held = [(str(r[0]), int(r[1]), int(r[2])) for r in conn.execute(
        "SELECT member_id, balance, points FROM member_balance WHERE balance > 0 OR points > 0 ORDER BY member_id")]
    return held, member_rows(conn, [m for m, _, _ in held])


def member_rows(conn: sqlite3.Connection, member_ids: Iterable[str]) -> list[MemberRow]:
    out = []
    for member_id in member_ids:
        r = conn.execute("""SELECT member_id, tier, pii, tags, home_store, created_at
                            FROM members WHERE member_id = ?""", (member_id,)).fetchone()
        if r is not None:
            p = pii.keys(conn).open_personal(r[0], r[2])
            out.append(MemberRow(r[0], r[1], p.phone, p.card_no, p.name, p.birthday,
                                 msgspec.json.decode(r[3], type=list[str]), r[4], r[5]))
    return out


def store_paired(conn: sqlite3.Connection, result: PairResult, *, hq_url: str, private_key: bytes,
                 public_key: bytes, hq_public_key: bytes, at: str) -> int:
    """Record the pairing; hand HQ the holdings it did not adopt (HQ's ledger is authoritative for
    members it already knew). Returns how many members' holdings were handed over."""
    conn.execute(
        f"""INSERT INTO sync_state (id, {_STATE_COLUMNS})
            VALUES (1, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?, NULL, NULL, NULL)""",
        (result.store_id, hq_url, private_key, public_key, hq_public_key, result.base_seq, at))
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('store_id', ?)", (result.store_id,))
    if result.lookup_key:  # the chain's lookup key: hash phones and cards as every store and HQ do
        path = pii.db_path_of(conn)
        if path is not None:
            pii.rehash(conn, pii.set_lookup_key(pii.key_path(path), unb64(result.lookup_key)))
    kept = set(result.kept)
    handed = 0
    held, _ = holdings(conn)
    for member_id, balance, points in held:
        if member_id in kept:
            continue
        handed += 1
        for ledger, amount in (("value", balance), ("points", points)):
            if amount:
                member_ledger.post(conn, ledger, member_id, -amount, "hq_pairing", "pairing", SYNC_ACTOR, at)  # type: ignore[arg-type]
                conn.execute("INSERT INTO sync_escrow (ref, kind, member_id, ledger, amount, at) "
                             "VALUES (?, 'pairing', ?, ?, ?, ?)", (f"pairing:{member_id}:{ledger}", member_id,
                                                                   ledger, amount, at))
    return handed


# -- up: batches and acks -------------------------------------------------------------------------------

def next_batch(conn: sqlite3.Connection, store_id: str, after: int, *, upto: int | None = None,
               max_rows: int = 4000, max_bytes: int = 2 * 1024 * 1024) -> Batch:
    """Outbox rows after `after` (through `upto` when resending a range), at most `max_rows` rows and
    about `max_bytes` of payload: a batch always holds at least one row if there is one."""
    sql = "SELECT seq, kind, ref, created_at, payload FROM outbox WHERE seq > ?"
    args: list[object] = [after]
    if upto is not None:
        sql += " AND seq <= ?"
        args.append(upto)
    sql += " ORDER BY seq LIMIT ?"
    args.append(max_rows)
    rows: list[OutRow] = []
    size = 0
    for seq, kind, ref, at, payload in conn.execute(sql, args):
        if rows and size + len(payload) > max_bytes:
            break
        size += len(payload) + len(ref) + 40
        rows.append(OutRow(seq, kind, ref, at, msgspec.Raw(pii.open_payload(conn, kind, bytes(payload)))))
    return Batch(store_id=store_id, head=outbox_head(conn), rows=rows)


def record_ack(conn: sqlite3.Connection, ack: Ack, at: str) -> None:
    """HQ's ack is the truth: the agent resumes after it, even if it is lower than what we thought."""
    conn.execute("UPDATE sync_state SET acked_seq = ?, last_push_at = ? WHERE id = 1", (ack.acked, at))
    for seq, reason in ack.quarantined:
        add_alert(conn, "quarantined", str(seq), reason, at)


def add_alert(conn: sqlite3.Connection, kind: str, ref: str, detail: str, at: str) -> None:
    conn.execute("""INSERT INTO sync_alerts (at, kind, ref, detail) VALUES (?, ?, ?, ?)
                    ON CONFLICT (kind, ref) DO UPDATE SET detail = excluded.detail, cleared_at = NULL""",
                 (at, kind, ref, detail[:500]))
    log.warning("sync alert %s %s: %s", kind, ref, detail[:200])


def clear_alerts(conn: sqlite3.Connection, kind: str, at: str) -> None:
    conn.execute("UPDATE sync_alerts SET cleared_at = ? WHERE kind = ? AND cleared_at IS NULL", (at, kind))


# -- down: the feed -------------------------------------------------------------------------------------

class FeedOutcome(msgspec.Struct):
    applied: int = 0
    refused: list[tuple[int, str]] = []
    reclaimed: int = 0  # reclaim entries applied: their release deltas wait in the outbox (push them now)


def apply_feed(conn: sqlite3.Connection, entries: list[FeedEntry], head: int, now: str) -> FeedOutcome:
    """Verify and apply feed entries in order, in this one transaction; stop at the first entry that
    must be refused (the cursor stays before it) and raise an alert naming it."""
    state = load_state(conn)
    if state is None:
        return FeedOutcome()
    cursor = state.feed_cursor
    out = FeedOutcome()
    for entry in entries:
        problem = entry_problem(entry, state.hq_public_key, state.store_id, cursor)
        if problem is not None:
            add_alert(conn, f"feed_{problem}", str(entry.seq), f"feed entry {entry.seq} refused: {problem}", now)
            out.refused.append((entry.seq, problem))
            if problem == "replayed":
                continue  # already applied; nothing to do and nothing blocks
            break
        try:
            body = feed_body_decoder.decode(entry.body)
        except msgspec.DecodeError as exc:  # signed by HQ yet unreadable: a newer kind; skip it, loudly
            add_alert(conn, "feed_unreadable", str(entry.seq), str(exc), now)
        else:
            apply_body(conn, body, entry.seq, state.store_id, now)
            if isinstance(body, EscrowReclaim):
                out.reclaimed += 1
        cursor = entry.seq
        out.applied += 1
    conn.execute("UPDATE sync_state SET feed_cursor = ?, feed_head = max(feed_head, ?), last_pull_at = ? "
                 "WHERE id = 1", (cursor, head, now))
    return out


def apply_body(conn: sqlite3.Connection, body: FeedBody, seq: int, store_id: str, now: str) -> None:
    match body:
        case PriceChange(prices=prices, effective_at=effective_at):
            if effective_at is not None and effective_at > now:
                conn.executemany(
                    """INSERT INTO sync_pending_prices (sku, effective_at, price, feed_seq) VALUES (?, ?, ?, ?)
                       ON CONFLICT (sku, effective_at) DO UPDATE SET price = excluded.price,
                       feed_seq = excluded.feed_seq""", [(sku, effective_at, price, seq) for sku, price in prices])
            else:
                conn.executemany("UPDATE items SET price = ?, updated_at = ? WHERE sku = ?",
                                 [(price, now, sku) for sku, price in prices])
        case PriceListPut():
            _put_price_list(conn, body, now)
        case PromotionPut(rule_id=rule_id, rule=rule, active=active):
            _put_promotion(conn, rule_id, rule, active, seq, now)
        case CatalogPut(categories=categories, items=items):
            _put_catalog(conn, categories, items, now)
        case MembersPut(tiers=tiers, members=members):
            member_tiers.upsert_tiers(conn, [_tier_def(t) for t in tiers])
            for m in members:
                _put_member(conn, m, now)
        case MemberErased(member_id=member_id):
            privacy.apply_erased(conn, member_id, now)
        case EscrowGrant():
            apply_grant(conn, body, now)
        case EscrowReclaim():
            apply_reclaim(conn, body, now)
        case TransferState():
            transfers.apply_state(conn, body, store_id, now)
        case CouponPut():
            skipped = put_coupon(conn, body, seq, store_id, now)
            if skipped is not None:
                add_alert(conn, "feed_bad_coupon", str(seq), skipped, now)
        case MemberMerged(loser=loser, winner=winner):
            problem = chainwide.apply_merge(conn, loser, winner, now)
            if problem is not None:
                add_alert(conn, "feed_bad_merge", str(seq), problem, now)
        case MemberBalances(rows=rows, as_of=as_of, store=store, acked=acked):
            put_member_balances(conn, rows, as_of, store, acked, store_id)
        case ReferralPut():
            referrals.put_referral(conn, body)


def _put_price_list(conn: sqlite3.Connection, body: PriceListPut, now: str) -> None:
    conn.execute(
        """INSERT INTO price_lists (list_id, name, store_id, tier, effective_from, effective_until, local_edit, source,
               created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'hq', ?)
           ON CONFLICT (list_id) DO UPDATE SET name = excluded.name, store_id = excluded.store_id,
               tier = excluded.tier, effective_from = excluded.effective_from,
               effective_until = excluded.effective_until, local_edit = excluded.local_edit""",
        (body.list_id, body.name, body.store_id, body.tier, body.effective_from, body.effective_until,
         int(body.local_edit), now))
    conn.execute("DELETE FROM price_list_items WHERE list_id = ?", (body.list_id,))
    known = {r[0] for r in conn.execute("SELECT sku FROM items")} if body.prices else set()
    conn.executemany("INSERT INTO price_list_items (list_id, sku, price) VALUES (?, ?, ?)",
                     [(body.list_id, sku, price) for sku, price in body.prices if sku in known])


def _put_promotion(conn: sqlite3.Connection, rule_id: str, rule: str, active: bool, seq: int, now: str) -> None:
    try:
        promo = promotion_decoder.decode(rule)
    except msgspec.DecodeError as exc:
        add_alert(conn, "feed_bad_promotion", str(seq), f"promotion {rule_id}: {exc}", now)
        return
    if promo.rule_id != rule_id or rule_id.startswith(RESERVED_PREFIXES):
        add_alert(conn, "feed_bad_promotion", str(seq), f"promotion {rule_id}: reserved or mismatched id", now)
        return
    conn.execute(
        """INSERT INTO promotions (rule_id, rule, active, source, created_by, created_at, updated_at)
           VALUES (?, ?, ?, 'hq', 'hq', ?, ?)
           ON CONFLICT (rule_id) DO UPDATE SET rule = excluded.rule, active = excluded.active, source = 'hq',
               updated_at = excluded.updated_at""", (rule_id, rule, int(active), now, now))
    bump_version(conn)


def _put_catalog(conn: sqlite3.Connection, categories: list[tuple[str, str | None, str, str]],
                 items: list[ItemRow], now: str) -> None:
    for category_id, parent_id, name_zh, name_en in categories:
        conn.execute("""INSERT INTO categories (category_id, parent_id, name_zh, name_en) VALUES (?, ?, ?, ?)
                        ON CONFLICT (category_id) DO UPDATE SET parent_id = excluded.parent_id,
                        name_zh = excluded.name_zh, name_en = excluded.name_en""",
                     (category_id, parent_id, name_zh, name_en))
    if categories:
        bump_version(conn)
    for it in items:
        sku, barcodes = it.sku, it.barcodes
        conn.execute(
            """INSERT INTO items (sku, name_zh, name_en, category_id, unit, price, tax_rate_bp, plu, brand, tags,
                   active, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (sku) DO UPDATE SET name_zh = excluded.name_zh, name_en = excluded.name_en,
                   category_id = excluded.category_id, unit = excluded.unit, price = excluded.price,
                   tax_rate_bp = excluded.tax_rate_bp, plu = excluded.plu, brand = excluded.brand,
                   tags = excluded.tags, active = excluded.active, updated_at = excluded.updated_at""",
            (sku, it.name_zh, it.name_en, it.category_id, it.unit, it.price, it.tax_rate_bp, it.plu, it.brand,
             msgspec.json.encode(it.tags).decode(), int(it.active), now))
        for code, symbology in barcodes:
            conn.execute("""INSERT INTO barcodes (code, sku, symbology) VALUES (?, ?, ?)
                            ON CONFLICT (code) DO UPDATE SET sku = excluded.sku, symbology = excluded.symbology""",
                         (code, sku, symbology))


def _tier_def(t: TierRow) -> TierDef:
    metric = t.metric if t.metric in ("spend", "points", "visits") else "points"
    return TierDef(tier=t.tier, name_zh=t.name_zh, name_en=t.name_en, discount_bp=t.discount_bp,
                   points_multiplier_pct=t.points_multiplier_pct, rank=t.rank, metric=metric,  # type: ignore[arg-type]
                   threshold=t.threshold if t.metric else t.min_points)


def put_member(conn: sqlite3.Connection, m: MemberRow, now: str) -> None:
    """A member profile from HQ into this store's cache (a feed entry or a lookup answer)."""
    _put_member(conn, m, now)


def _put_member(conn: sqlite3.Connection, m: MemberRow, now: str) -> None:
    if conn.execute("SELECT 1 FROM tiers WHERE tier = ?", (m.tier,)).fetchone() is None:
        return  # a tier the store does not know yet: HQ sends tiers before members
    held = conn.execute("SELECT tier FROM members WHERE member_id = ?", (m.member_id,)).fetchone()
    if held is not None and held[0] != m.tier:  # HQ's rules moved the member: kept in the tier history
        member_tiers.record_change(conn, m.member_id, str(held[0]), m.tier, now, "hq")
    k = pii.keys(conn)
    personal = pii.Personal(phone=m.phone, name=m.name, birthday=m.birthday, card_no=m.card_no)
    phone_hash, card_hash, tail, blob = k.columns(m.member_id, personal)
    for column, value in (("phone_hash", phone_hash), ("card_hash", card_hash)):
        if value is not None:  # a phone or card moved to this member at HQ: HQ wins
            conn.execute(f"UPDATE members SET {column} = NULL WHERE {column} = ? AND member_id != ?",
                         (value, m.member_id))
    conn.execute(
        """INSERT INTO members (member_id, phone_hash, card_hash, phone_last4, pii, tier, tags, home_store,
               created_at, auto_tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (member_id) DO UPDATE SET phone_hash = excluded.phone_hash, card_hash = excluded.card_hash,
               phone_last4 = excluded.phone_last4, pii = excluded.pii, tier = excluded.tier, tags = excluded.tags,
               auto_tags = excluded.auto_tags""",
        (m.member_id, phone_hash, card_hash, tail, blob, m.tier, msgspec.json.encode(m.tags).decode(),
         m.home_store, m.created_at, msgspec.json.encode(sorted(m.auto_tags)).decode()))
    conn.execute("INSERT OR IGNORE INTO member_balance (member_id) VALUES (?)", (m.member_id,))
    referrals.assign_code(conn, m.member_id)


def put_member_balances(conn: sqlite3.Connection, rows: list[tuple[str, int, int]], as_of: str, store: str,
                        acked: int, store_id: str) -> None:
    """HQ's chain-wide figures: they hold this store's deltas through `acked` when the entry says it is
    about this store, else through what HQ had acknowledged of it (our own ack is the best we know)."""
    if store != store_id:
        row = conn.execute("SELECT acked_seq FROM sync_state WHERE id = 1").fetchone()
        acked = int(row[0]) if row else 0
    chainwide.put_balances(conn, rows, as_of, acked)


def apply_due_prices(conn: sqlite3.Connection, now: str) -> int:
    """Future-dated HQ prices whose time has come: into the catalog, in effective order."""
    due = conn.execute("SELECT sku, price, effective_at FROM sync_pending_prices WHERE effective_at <= ? "
                       "ORDER BY effective_at, feed_seq", (now,)).fetchall()
    if not due:
        return 0
    conn.executemany("UPDATE items SET price = ?, updated_at = ? WHERE sku = ?", [(r[1], now, r[0]) for r in due])
    conn.execute("DELETE FROM sync_pending_prices WHERE effective_at <= ?", (now,))
    return len(due)


# -- escrow ------------------------------------------------------------------------------------------------

def apply_grant(conn: sqlite3.Connection, grant: EscrowGrant, at: str) -> bool:
    """Add HQ's grant to this store's escrow once (by grant id). False if it was already applied."""
    if conn.execute("SELECT 1 FROM sync_escrow WHERE ref = ?", (grant.grant_id,)).fetchone() is not None:
        return False
    grant = msgspec.structs.replace(grant, member_id=chainwide.resolve(conn, grant.member_id))  # merged ids
    if conn.execute("SELECT 1 FROM members WHERE member_id = ?", (grant.member_id,)).fetchone() is None:
        add_alert(conn, "grant_unknown_member", grant.grant_id, f"grant for unknown member {grant.member_id}", at)
        return False
    conn.execute("INSERT INTO sync_escrow (ref, kind, member_id, ledger, amount, at) VALUES (?, 'grant', ?, ?, ?, ?)",
                 (grant.grant_id, grant.member_id, grant.ledger, grant.amount, at))
    if grant.amount:
        member_ledger.post(conn, grant.ledger, grant.member_id, grant.amount, "escrow_grant", grant.grant_id,
                           SYNC_ACTOR, at)
    return True


def apply_reclaim(conn: sqlite3.Connection, reclaim: EscrowReclaim, at: str) -> int:
    """Give back what HQ asks for, as far as it is not spent; the answer goes up as a release delta."""
    if conn.execute("SELECT 1 FROM sync_escrow WHERE ref = ?", (reclaim.request_id,)).fetchone() is not None:
        return 0
    reclaim = msgspec.structs.replace(reclaim, member_id=chainwide.resolve(conn, reclaim.member_id))
    amount = 0
    if conn.execute("SELECT 1 FROM members WHERE member_id = ?", (reclaim.member_id,)).fetchone() is not None:
        points, balance = member_ledger.balances(conn, reclaim.member_id)
        amount = max(0, min(reclaim.amount, balance if reclaim.ledger == "value" else points))
    if amount:
        member_ledger.post(conn, reclaim.ledger, reclaim.member_id, -amount, "escrow_release", reclaim.request_id,
                           SYNC_ACTOR, at)
    conn.execute("INSERT INTO sync_escrow (ref, kind, member_id, ledger, amount, at) VALUES (?, 'release', ?, ?, ?, ?)",
                 (reclaim.request_id, reclaim.member_id, reclaim.ledger, amount, at))
    outbox.append(conn, EscrowReleaseDelta(request_id=reclaim.request_id, member_id=reclaim.member_id,
                                           ledger=reclaim.ledger, amount=amount, at=at), reclaim.request_id, at)
    return amount


# -- digests -------------------------------------------------------------------------------------------------

def delta_amount(delta: Delta) -> int:
    """The one number per delta that daily digests add up (both sides use this function)."""
    match delta:
        case SaleDelta(total=total):
            return total
        case ReturnDelta(refund_total=refund_total):
            return refund_total
        case TopupDelta(amount=amount) | EscrowReleaseDelta(amount=amount):
            return amount
        case StockDelta(qty=qty):
            return qty
        case MemberDelta():
            return 0
        case TransferRequestDelta(lines=lines) | TransferShippedDelta(lines=lines) | TransferReceivedDelta(lines=lines):
            return sum(ln.qty for ln in lines)
    return 0


def fold_digest(rows: Iterable[tuple[int, str, str, int]]) -> list[DigestRow]:
    """(seq, kind, day, amount) → one row per (day, kind): count, sum and the sequence range. Pure."""
    acc: dict[tuple[str, str], list[int]] = {}
    for seq, kind, day, amount in rows:
        cur = acc.get((day, kind))
        if cur is None:
            acc[(day, kind)] = [1, amount, seq, seq]
        else:
            cur[0] += 1
            cur[1] += amount
            cur[2] = min(cur[2], seq)
            cur[3] = max(cur[3], seq)
    return [DigestRow(day, kind, c, t, lo, hi) for (day, kind), (c, t, lo, hi) in sorted(acc.items())]


def digests(conn: sqlite3.Connection, upto: int, since_day: str = "") -> list[DigestRow]:
    """Daily digests of this hub's outbox through `upto` (the acked sequence)."""
    rows = []
    for seq, kind, at, payload in conn.execute(
            "SELECT seq, kind, created_at, payload FROM outbox WHERE seq <= ? AND created_at >= ? ORDER BY seq",
            (upto, since_day)):
        try:
            amount = delta_amount(delta_decoder.decode(pii.open_payload(conn, str(kind), bytes(payload))))
        except msgspec.DecodeError:
            amount = 0
        rows.append((int(seq), str(kind), str(at)[:10], amount))
    return fold_digest(rows)
