"""Member cache: create, look up, top up. Reads on a reader connection, writes in the writer."""

from __future__ import annotations

import sqlite3
import uuid

import msgspec

from edge.engage import referrals
from edge.engage.referral_rules import code_for
from edge.errors import ApiError
from edge.journal import chain
from edge.members import chainwide, ledger, pii
from edge.members.models import CreateMemberRequest, Member, Spendable, mask_phone
from edge.members.points import next_expiring
from edge.outbox import queue as outbox
from edge.sales.checkout import Replay, replay_or_conflict
from edge.sales.models import TopupRequest, TopupResult
from edge.stock.ledger import Actor
from hq_sync.protocol import MemberDelta, TopupDelta

_encoder = msgspec.json.Encoder()

_MEMBER_SQL = """
SELECT m.member_id, m.pii, m.tier, t.name_zh, t.name_en, m.tags,
       coalesce(b.points, 0), coalesce(b.balance, 0), m.created_at, m.auto_tags, m.tier_review_on
FROM members m JOIN tiers t ON t.tier = m.tier LEFT JOIN member_balance b ON b.member_id = m.member_id
"""


def _member(conn: sqlite3.Connection, row: sqlite3.Row, show_phone: bool) -> Member:
    p = pii.keys(conn).open_personal(row[0], row[1])
    return Member(
        member_id=row[0], phone=p.phone if show_phone else mask_phone(p.phone), card_no=p.card_no, name=p.name,
        birthday=p.birthday, tier=row[2], tier_name=row[3], tier_name_en=row[4],
        tags=msgspec.json.decode(row[5], type=list[str]), points=row[6], balance=row[7], created_at=row[8],
        phone_masked=not show_phone, auto_tags=msgspec.json.decode(row[9], type=list[str]), tier_review_on=row[10],
    )


def find_member(conn: sqlite3.Connection, *, member_id: str | None = None, phone: str | None = None,
                card: str | None = None, show_phone: bool) -> Member | None:
    """THE member lookup of the hub (by id, phone or card): an id HQ merged into another member resolves
    to that member; balances are chain-wide with this store's part beside them (edge/members/chainwide.py)."""
    if member_id is not None:
        row = conn.execute(_MEMBER_SQL + " WHERE m.member_id = ?", (chainwide.resolve(conn, member_id),)).fetchone()
    elif phone is not None:
        row = conn.execute(_MEMBER_SQL + " WHERE m.phone_hash = ?", (pii.keys(conn).phone_hash(phone),)).fetchone()
    elif card is not None:
        row = conn.execute(_MEMBER_SQL + " WHERE m.card_hash = ?", (pii.keys(conn).card_hash(card),)).fetchone()
    else:
        return None
    if row is None:
        return None
    if (winner := chainwide.resolve(conn, row[0])) != row[0]:  # a merged record still holding its card
        return find_member(conn, member_id=winner, show_phone=show_phone)
    member = _member(conn, row, show_phone)
    shown = chainwide.figures(conn, member.member_id, (member.points, member.balance))
    code = conn.execute("SELECT code FROM referral_codes WHERE member_id = ?", (row[0],)).fetchone()
    by = conn.execute("SELECT referrer_id FROM referrals WHERE member_id = ? AND status != 'refused'",
                      (row[0],)).fetchone()
    return msgspec.structs.replace(member, points_expiring=next_expiring(conn, row[0]), balance=shown.balance,
                                   points=shown.points, balance_as_of=shown.as_of,
                                   spendable_here=Spendable(shown.spendable_balance, shown.spendable_points),
                                   referral_code=code[0] if code else code_for(row[0]),
                                   referred_by=by[0] if by else None)


def create_member(conn: sqlite3.Connection, req: CreateMemberRequest, actor: Actor, at: str, store_id: str) -> str:
    if conn.execute("SELECT 1 FROM tiers WHERE tier = ?", (req.tier,)).fetchone() is None:
        raise ApiError(422, "unknown_tier", f"no tier {req.tier}")
    member_id = req.member_id or f"M{uuid.uuid4().hex[:12].upper()}"
    k = pii.keys(conn)
    for column, value in (("member_id", member_id), ("phone_hash", k.phone_hash(req.phone)),
                          ("card_hash", k.card_hash(req.card_no))):
        if value is not None and conn.execute(f"SELECT 1 FROM members WHERE {column} = ?", (value,)).fetchone():
            raise ApiError(409, "member_exists", f"a member with this {column.removesuffix('_hash')} already exists")
    birthday = req.birthday.isoformat() if req.birthday else None
    pii.insert_member(conn, member_id, pii.Personal(phone=req.phone, name=req.name, birthday=birthday,
                                                    card_no=req.card_no),
                      tier=req.tier, tags=msgspec.json.encode(req.tags).decode(), home_store=store_id, created_at=at)
    conn.execute("INSERT INTO member_balance (member_id) VALUES (?)", (member_id,))
    conn.execute("INSERT INTO audit (at, user_id, till_id, action, target) VALUES (?, ?, ?, 'member.create', ?)",
                 (at, actor.user_id, actor.till_id, member_id))
    outbox.append(conn, MemberDelta(member_id=member_id, tier=req.tier, at=at, phone=req.phone, card_no=req.card_no,
                                    name=req.name, birthday=birthday, tags=list(req.tags), home_store=store_id),
                  member_id, at)
    referrals.assign_code(conn, member_id)
    if req.referral_code is not None:
        referrals.record(conn, member_id, req.referral_code, store_id, actor, at)
    return member_id


def commit_topup(conn: sqlite3.Connection, member_id: str, req: TopupRequest, digest: str, actor: Actor,
                 at: str) -> Replay | bytes:
    topup_id = str(req.topup_id)
    replay = replay_or_conflict(conn, "topups", "topup_id", topup_id, digest)
    if replay is not None:
        return replay
    member_id = chainwide.resolve(conn, member_id)  # an id HQ merged into another member tops up that member
    if conn.execute("SELECT 1 FROM members WHERE member_id = ?", (member_id,)).fetchone() is None:
        raise ApiError(404, "unknown_member", f"no member {member_id[:64]}")
    balance = ledger.post(conn, "value", member_id, req.amount, "topup", topup_id, actor, at)
    points, _ = ledger.balances(conn, member_id)
    till_id = req.till_id or actor.till_id
    appended = chain.append(conn, "topup", topup_id, at, {
        "member_id": member_id, "amount": req.amount, "method": req.method, "user_id": actor.user_id,
        "till_id": till_id,
    })
    body = _encoder.encode(TopupResult(topup_id=topup_id, member_id=member_id, amount=req.amount, method=req.method,
                                       balance=balance, points=points, created_at=at, journal_seq=appended.seq,
                                       journal_hash=appended.hash))
    conn.execute(
        """INSERT INTO topups (topup_id, member_id, amount, method, till_id, user_id, request_hash, response,
               created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (topup_id, member_id, req.amount, req.method, till_id, actor.user_id, digest, body, at),
    )
    outbox.append(conn, TopupDelta(topup_id=topup_id, member_id=member_id, amount=req.amount, method=req.method,
                                   user_id=actor.user_id, at=at, journal_seq=appended.seq, till_id=till_id),
                  topup_id, at)
    return body
