"""Members' personal data at HQ: sealed at rest, found by keyed hash, every unmasked read audited,
exported and erased on request (docs/privacy.md).

The crypto is the hub's (edge/members/pii.py: AES-GCM with a data key, HMAC-SHA256 with the lookup
key); HQ's key file is beside its SQLite file or `BACKROOM_HQ_KEY_FILE` (storage/db.py), never in
the database. HQ's lookup key is the chain's: a hub gets it at pairing (`PairResult.lookup_key`), so
a phone hashes the same at every store and at HQ. `hq_members` keeps `phone_hash` / `card_hash`
(indexed, not unique: two offline sign-ups of one phone exist until they are merged),
`phone_last4` in clear, and the sealed `pii`. Feed entries and quarantined deltas that carry
member profiles are sealed in their tables and opened when served.

Every HQ module that reads or writes a member's phone, name, birthday or card goes through this one.
"""

from __future__ import annotations

from typing import Any

import msgspec

from edge.members.models import mask_phone
from edge.members.pii import Keys, load
from edge.members.pii import Personal as Personal  # re-exported: HQ modules take it from here
from hq_sync.protocol import MemberDelta
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit as audit_write
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import SEALED_FEED_KINDS, append_feed, number_all_pending
from hq_sync.server.service.feed import keys as keys  # re-exported
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import (
    MemberErased,
    MemberRow,
    MembersPut,
    b64,
    feed_body_decoder,
    feed_body_encoder,
    sign_entry,
)

SEALED_DELTA_KINDS = frozenset({"member"})
ERASED_FIELDS = ("phone", "name", "birthday", "card_no", "tags")
PERSONAL_FIELDS = ("phone", "name", "birthday", "card_no")


def lookup_key(db: HqDb) -> str:
    """The chain's lookup key as a hub receives it at pairing."""
    return b64(load(db.key_path).lookup_key)


# -- members rows --------------------------------------------------------------------------------------------

def member_values(k: Keys, m: MemberRow) -> tuple[Any, ...]:
    """(member_id, tier, tags, home_store, created_at, phone_hash, card_hash, phone_last4, pii) of a row."""
    personal = Personal(phone=m.phone, name=m.name, birthday=m.birthday, card_no=m.card_no)
    return (m.member_id, m.tier, msgspec.json.encode(m.tags).decode(), m.home_store, m.created_at,
            *k.columns(m.member_id, personal))


_INSERT = """INSERT INTO hq_members (member_id, tier, tags, home_store, created_at, phone_hash, card_hash,
                 phone_last4, pii, balance, points) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def insert_member(tx: Tx, m: MemberRow, *, balance: int = 0, points: int = 0) -> None:
    tx.run(_INSERT, (*member_values(keys(tx), m), balance, points))


def insert_new_members(tx: Tx, new: list[MemberDelta]) -> None:
    """Members created at a store become HQ's (a known member's profile stays HQ's)."""
    k = keys(tx)
    tx.many(_INSERT + " ON CONFLICT (member_id) DO NOTHING",
            [(*member_values(k, MemberRow(m.member_id, m.tier, m.phone, m.card_no, m.name, m.birthday, list(m.tags),
                                          m.home_store, m.at)), 0, 0) for m in new])


_ROW_SQL = "SELECT member_id, tier, pii, tags, home_store, created_at FROM hq_members"


def member_rows(tx: Tx, member_id: str | None) -> list[MemberRow]:
    """Profiles as they travel to the stores (unsealed; the feed seals them again at rest)."""
    rows = tx.all(_ROW_SQL + " WHERE member_id = ?", (member_id,)) if member_id else \
        tx.all(_ROW_SQL + " ORDER BY member_id")
    k = keys(tx)
    out = []
    for r in rows:
        p = k.open_personal(str(r[0]), bytes(r[2]) if r[2] is not None else None)
        out.append(MemberRow(r[0], r[1], p.phone, p.card_no, p.name, p.birthday,
                             msgspec.json.decode(r[3], type=list[str]), r[4], r[5]))
    return out


def opened(tx: Tx, member_id: str, blob: Any) -> Personal:
    """The personal data of a `pii` column value (an erased member has none)."""
    return keys(tx).open_personal(member_id, bytes(blob) if blob is not None else None)


def write_personal(tx: Tx, member_id: str, p: Personal) -> None:
    """Store a member's personal data sealed, with its lookup hashes (the row exists)."""
    phone_hash, card_hash, tail, blob = keys(tx).columns(member_id, p)
    tx.run("UPDATE hq_members SET phone_hash = ?, card_hash = ?, phone_last4 = ?, pii = ? WHERE member_id = ?",
           (phone_hash, card_hash, tail, blob, member_id))


def of_row(m: MemberRow) -> Personal:
    return Personal(phone=m.phone, name=m.name, birthday=m.birthday, card_no=m.card_no)


def masked(m: MemberRow) -> dict[str, Any]:
    """A profile as HQ's audit of writes keeps it: no personal data beyond a masked phone and card."""
    return {"member_id": m.member_id, "tier": m.tier, "phone": mask_phone(m.phone), "card_no": mask_phone(m.card_no),
            "name_set": bool(m.name), "birthday_set": m.birthday is not None, "tags": m.tags}


def personal(tx: Tx, member_id: str) -> Personal | None:
    row = tx.one("SELECT pii FROM hq_members WHERE member_id = ?", (member_id,))
    if row is None:
        return None
    return keys(tx).open_personal(member_id, bytes(row[0]) if row[0] is not None else None)


def members_by_phone(tx: Tx, phone: str) -> list[str]:
    """Member ids with this phone (more than one until duplicates are merged)."""
    return [str(r[0]) for r in tx.all("SELECT member_id FROM hq_members WHERE phone_hash = ? ORDER BY created_at",
                                      (keys(tx).phone_hash(phone),))]


def members_by_card(tx: Tx, card: str) -> list[str]:
    return [str(r[0]) for r in tx.all("SELECT member_id FROM hq_members WHERE card_hash = ? ORDER BY created_at",
                                      (keys(tx).card_hash(card),))]


# -- sealed blobs in other tables -----------------------------------------------------------------------------

def seal_feed_body(tx: Tx, kind: str, body: bytes) -> bytes:
    return keys(tx).seal(body, b"feed:" + kind.encode()) if kind in SEALED_FEED_KINDS else body


def open_feed_body(tx: Tx, kind: str, stored: bytes) -> bytes:
    return keys(tx).open(stored, b"feed:" + kind.encode()) if kind in SEALED_FEED_KINDS else stored


def seal_delta_rows(tx: Tx, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """hq_deltas rows (store_id, seq, kind, ref, day, amount, status, reason, payload, received_at) with
    the payloads of member deltas sealed."""
    out = []
    for r in rows:
        if r[2] in SEALED_DELTA_KINDS and r[8] is not None:
            r = (*r[:8], keys(tx).seal(bytes(r[8]), b"delta:" + str(r[2]).encode()), *r[9:])
        out.append(r)
    return out


def open_delta_payload(tx: Tx, kind: str, stored: bytes) -> bytes:
    return keys(tx).open(stored, b"delta:" + kind.encode()) if kind in SEALED_DELTA_KINDS else stored


# -- audit ------------------------------------------------------------------------------------------------------

def audit(tx: Tx, username: str, member_ids: list[str], fields: tuple[str, ...], action: str, via: str,
          at: str) -> None:
    tx.many("INSERT INTO hq_pii_audit (at, username, member_id, fields, action, via) VALUES (?, ?, ?, ?, ?, ?)",
            [(at, username, m, ",".join(fields), action, via) for m in member_ids])


def audit_page(db: HqDb, member_id: str | None, limit: int, offset: int) -> dict[str, Any]:
    where, args = (" WHERE member_id = ?", [member_id]) if member_id else ("", [])
    with db.read() as tx:
        total = tx.one("SELECT count(*) FROM hq_pii_audit" + where, args)
        rows = tx.all("SELECT audit_id, at, username, member_id, fields, action, via FROM hq_pii_audit" + where
                      + " ORDER BY audit_id DESC LIMIT ? OFFSET ?", [*args, limit, offset])
    return {"entries": [{"audit_id": int(r[0]), "at": r[1], "username": r[2], "member_id": r[3],
                         "fields": [f for f in str(r[4]).split(",") if f], "action": r[5], "via": r[6]}
                        for r in rows],
            "total": int(total[0]) if total else 0}


# -- export and erase -----------------------------------------------------------------------------------------

def export(db: HqDb, member_id: str, username: str, at: str) -> dict[str, Any]:
    """Everything HQ holds about the member (audited in the same transaction)."""
    with db.write() as tx:
        row = tx.one("""SELECT member_id, tier, pii, tags, home_store, created_at, balance, points, erased_at
                        FROM hq_members WHERE member_id = ?""", (member_id,))
        if row is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        p = keys(tx).open_personal(member_id, bytes(row[2]) if row[2] is not None else None)
        ledger = tx.all("""SELECT entry_id, ledger, delta, kind, store_id, ref, at FROM hq_member_ledger
                           WHERE member_id = ? ORDER BY entry_id""", (member_id,))
        sales = tx.all("""SELECT sale_id, store_id, receipt_no, at, total, discount, points_earned FROM hq_sales
                          WHERE member_id = ? ORDER BY at""", (member_id,))
        escrow = tx.all("SELECT store_id, ledger, outstanding FROM hq_escrow WHERE member_id = ? ORDER BY store_id",
                        (member_id,))
        audit(tx, username, [member_id], PERSONAL_FIELDS, "export", "hq_api", at)
    return {
        "member_id": row[0], "tier": row[1], "phone": p.phone, "name": p.name, "birthday": p.birthday,
        "card_no": p.card_no, "tags": msgspec.json.decode(row[3], type=list[str]), "home_store": row[4],
        "created_at": row[5], "balance": int(row[6]), "points": int(row[7]), "erased_at": row[8],
        "ledger": [{"entry_id": int(r[0]), "ledger": r[1], "delta": int(r[2]), "kind": r[3], "store_id": r[4],
                    "ref": r[5], "at": r[6]} for r in ledger],
        "sales": [{"sale_id": r[0], "store_id": r[1], "receipt_no": r[2], "at": r[3], "total": int(r[4]),
                   "discount": int(r[5]), "points_earned": int(r[6])} for r in sales],
        "escrow": [{"store_id": r[0], "ledger": r[1], "outstanding": int(r[2])} for r in escrow],
        "exported_at": at,
    }


def erase_in(tx: Tx, private_key: bytes, member_id: str, username: str, via: str, at: str) -> bool:
    """Erase the member's personal data at HQ and tell every store (a feed entry to all). False when
    there is no such member or it was erased already (nothing is sent twice)."""
    row = tx.one("SELECT erased_at FROM hq_members WHERE member_id = ?", (member_id,))
    if row is None or row[0] is not None:
        return False
    tx.run("""UPDATE hq_members SET pii = NULL, phone_hash = NULL, card_hash = NULL, phone_last4 = NULL,
              tags = '[]', erased_at = ? WHERE member_id = ?""", (at, member_id))
    audit(tx, username, [member_id], ERASED_FIELDS, "erase", via, at)
    _scrub_feed(tx, private_key, member_id)
    append_feed(tx, private_key, "*", MemberErased(member_id=member_id), at)
    return True


def _scrub_feed(tx: Tx, private_key: bytes, member_id: str) -> None:
    """Take the member out of the profiles earlier feed entries carry (stores' opening snapshots),
    re-signed: those entries were applied long ago, and none of them may keep the person. Queued entries
    (PostgreSQL) are numbered first, so they are among them."""
    number_all_pending(tx, private_key)
    for seq, store, at, body in tx.all("SELECT seq, store_id, at, body FROM hq_feed WHERE kind = 'members'"):
        put = feed_body_decoder.decode(open_feed_body(tx, "members", bytes(body)))
        if not isinstance(put, MembersPut) or all(m.member_id != member_id for m in put.members):
            continue
        data = feed_body_encoder.encode(msgspec.structs.replace(
            put, members=[m for m in put.members if m.member_id != member_id]))
        entry = sign_entry(private_key, int(seq), str(store), str(at), data)
        tx.run("UPDATE hq_feed SET body = ?, sig = ? WHERE seq = ?",
               (seal_feed_body(tx, "members", data), entry.sig, seq))


def erase(db: HqDb, private_key: bytes, member_id: str, who: Principal, at: str) -> dict[str, Any]:
    """An erase asked at HQ (the admin API): in HQ's audit of writes too."""
    require(who, "members.privacy")
    username = who.username
    with db.write() as tx:
        tx.lock("hq_members", "member_id", [member_id])
        row = tx.one("SELECT erased_at FROM hq_members WHERE member_id = ?", (member_id,))
        if row is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        if row[0] is not None:
            raise HqError(409, "already_erased", f"member {member_id[:64]} was erased at {row[0]}")
        erase_in(tx, private_key, member_id, username, "hq_api", at)
        audit_write(tx, who, "member.erase", f"member:{member_id}", None, {"fields": list(ERASED_FIELDS)}, at=at)
    return {"member_id": member_id, "erased_at": at, "fields": list(ERASED_FIELDS)}
