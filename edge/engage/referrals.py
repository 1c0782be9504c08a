"""Referrals at a hub, over its SQLite (the rules: edge/engage/referral_rules.py).

- Sign-up (`POST /api/v1/members` with `referral_code`, or `POST /api/v1/members/{id}/referrer` before
  the member's first purchase) records B → A here and sends a `referral` delta to HQ in the same
  transaction.
- Who rewards: a paired hub never does — HQ decides when the sale delta arrives (any store's sale,
  any store's referrer: HQ sees them all) and sends the referral's state down the feed. A hub that is
  not paired decides itself in the sale's transaction, with the same pure function.
- A return of the rewarding purchase that leaves it below the policy's minimum reverses the reward in
  the return's transaction (standalone) or at HQ (paired).
"""

from __future__ import annotations

import datetime
import sqlite3
from typing import Any

import msgspec

from edge.engage import referral_rules as rules
from edge.engage.coupon_rules import ensure_coupon_rule
from edge.engage.policy import EngagePolicy, decode_policy
from edge.errors import ApiError
from edge.journal import chain
from edge.members import ledger as member_ledger
from edge.outbox import queue as outbox
from edge.stock.ledger import Actor
from hq_sync.protocol import ReferralDelta
from hq_sync.wire import ReferralPut

SYSTEM = Actor(user_id="system:referrals", till_id=None)


class ReferralLink(msgspec.Struct, frozen=True):
    member_id: str
    referrer_id: str
    status: str
    at: str
    store_id: str | None
    sale_id: str | None
    reason: str


class RewardRow(msgspec.Struct, frozen=True):
    member_id: str  # B, whose purchase it was
    level: int
    beneficiary_id: str
    sale_id: str
    kind: str
    points: int
    coupon_code: str | None
    status: str
    taken_back: int
    shortfall: int
    at: str


class ReferralView(msgspec.Struct, frozen=True):
    """A member's referral history (`GET /api/v1/members/{id}/referrals`)."""

    member_id: str
    referral_code: str | None
    referred_by: ReferralLink | None
    referred: list[ReferralLink]
    rewards_earned: list[RewardRow]  # what this member got for others' purchases
    rewards_given: list[RewardRow]  # what this member's own first purchase gave others


def load_policy(conn: sqlite3.Connection) -> EngagePolicy:
    row = conn.execute("SELECT value FROM settings WHERE key = 'engage_policy'").fetchone()
    return decode_policy(row[0] if row else None)


def store_policy(conn: sqlite3.Connection, policy: EngagePolicy) -> None:
    conn.execute("""INSERT INTO settings (key, value) VALUES ('engage_policy', ?)
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value""", (msgspec.json.encode(policy).decode(),))


# -- codes ----------------------------------------------------------------------------------------------------

def ensure_codes(conn: sqlite3.Connection) -> int:
    """Give every member without a referral code one (writer). Returns how many were assigned."""
    missing = [r[0] for r in conn.execute(
        "SELECT member_id FROM members WHERE member_id NOT IN (SELECT member_id FROM referral_codes)")]
    for member_id in missing:
        assign_code(conn, member_id)
    return len(missing)


def assign_code(conn: sqlite3.Connection, member_id: str) -> str:
    row = conn.execute("SELECT code FROM referral_codes WHERE member_id = ?", (member_id,)).fetchone()
    if row is not None:
        return str(row[0])
    variant = 0
    while True:
        code = rules.code_for(member_id, variant)
        if conn.execute("INSERT OR IGNORE INTO referral_codes (code, member_id) VALUES (?, ?)",
                        (code, member_id)).rowcount:
            return code
        variant += 1


def code_of(conn: sqlite3.Connection, member_id: str) -> str | None:
    row = conn.execute("SELECT code FROM referral_codes WHERE member_id = ?", (member_id,)).fetchone()
    return str(row[0]) if row else None


def resolve(conn: sqlite3.Connection, code: str) -> str | None:
    """The member a code names (writer: members that arrived without a code get theirs first)."""
    code = rules.normalise_code(code)
    row = conn.execute("SELECT member_id FROM referral_codes WHERE code = ?", (code,)).fetchone()
    if row is None and ensure_codes(conn):
        row = conn.execute("SELECT member_id FROM referral_codes WHERE code = ?", (code,)).fetchone()
    return str(row[0]) if row else None


# -- recording B -> A ----------------------------------------------------------------------------------------

def _referrer_of(conn: sqlite3.Connection) -> Any:
    def lookup(member_id: str) -> str | None:
        row = conn.execute("SELECT referrer_id FROM referrals WHERE member_id = ? AND status != 'refused'",
                           (member_id,)).fetchone()
        return str(row[0]) if row else None
    return lookup


def record(conn: sqlite3.Connection, member_id: str, code: str, store_id: str, actor: Actor, at: str) -> str:
    """Record that `member_id` was referred by the owner of `code` (writer, in the caller's transaction).
    Returns the referrer's id; refusals are ApiErrors (nothing written)."""
    referrer_id = resolve(conn, code)
    if referrer_id is None:
        raise ApiError(422, "unknown_referral_code", f"no member has the referral code {code[:16]}")
    why = rules.refusal(member_id, referrer_id, _referrer_of(conn))
    if why == "self_referral":
        raise ApiError(422, "self_referral", "a member cannot refer himself")
    if why == "referral_cycle":
        raise ApiError(422, "referral_cycle", f"{referrer_id} was (directly or not) referred by {member_id}: "
                       "a referral may not go round in a circle")
    if conn.execute("SELECT 1 FROM referrals WHERE member_id = ?", (member_id,)).fetchone() is not None:
        raise ApiError(409, "already_referred", f"member {member_id} already has a referrer")
    if conn.execute("SELECT 1 FROM sales WHERE member_id = ? LIMIT 1", (member_id,)).fetchone() is not None:
        raise ApiError(409, "first_purchase_made", f"member {member_id} has bought already; a referral is "
                       "recorded at sign-up or before the first purchase")
    normal = rules.normalise_code(code)
    conn.execute("""INSERT INTO referrals (member_id, referrer_id, code, store_id, at, status)
                    VALUES (?, ?, ?, ?, ?, 'pending')""", (member_id, referrer_id, normal, store_id, at))
    conn.execute("INSERT INTO audit (at, user_id, till_id, action, target) VALUES (?, ?, ?, 'member.referral', ?)",
                 (at, actor.user_id, actor.till_id, f"{member_id}<-{referrer_id}"))
    outbox.append(conn, ReferralDelta(member_id=member_id, referrer_id=referrer_id, code=normal, at=at,
                                      user_id=actor.user_id), member_id, at)
    return referrer_id


# -- standalone decisions ---------------------------------------------------------------------------------------

def _paired(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sync_state").fetchone() is not None


def on_sale(conn: sqlite3.Connection, sale_id: str, member_id: str | None, total: int, at: str) -> list[rules.Reward]:
    """In the sale's transaction: B's first qualifying purchase rewards the members above B, once. A paired
    hub leaves this to HQ."""
    if member_id is None or _paired(conn):
        return []
    row = conn.execute("SELECT status FROM referrals WHERE member_id = ?", (member_id,)).fetchone()
    if row is None or row[0] != "pending":
        return []
    policy = load_policy(conn).referrals
    rewards = rules.first_purchase_rewards(policy, rules.upline(member_id, _referrer_of(conn), policy.max_depth),
                                           total)
    if not rewards:
        return []
    for reward in rewards:
        coupon = None
        if reward.kind == "points":
            member_ledger.post(conn, "points", reward.beneficiary, reward.points, "referral", sale_id, SYSTEM, at)
        else:
            coupon = _reward_coupon(conn, policy.coupon_rule_id, policy.coupon_off, policy.coupon_valid_days,
                                    member_id, reward, at)
        conn.execute("""INSERT INTO referral_rewards (member_id, level, beneficiary_id, sale_id, kind, points,
                            coupon_code, status, at) VALUES (?, ?, ?, ?, ?, ?, ?, 'granted', ?)""",
                     (member_id, reward.level, reward.beneficiary, sale_id, reward.kind, reward.points, coupon, at))
    conn.execute("UPDATE referrals SET status = 'rewarded', sale_id = ?, decided_by = 'hub' WHERE member_id = ?",
                 (sale_id, member_id))
    chain.append(conn, "referral_reward", sale_id, at, {
        "member_id": member_id, "rewards": [[r.level, r.beneficiary, r.kind, r.points] for r in rewards]})
    return rewards


def reward_coupon_code(member_id: str, level: int) -> str:
    return f"REF-{member_id}-{level}"[:64]


def _reward_coupon(conn: sqlite3.Connection, rule_id: str, off: int, valid_days: int, member_id: str,
                   reward: rules.Reward, at: str) -> str:
    ensure_coupon_rule(conn, rule_id, "推荐有礼券", "Referral coupon", off, at)
    code = reward_coupon_code(member_id, reward.level)
    expires = (datetime.datetime.fromisoformat(at) + datetime.timedelta(days=valid_days)).isoformat()
    conn.execute("""INSERT INTO coupons (code, rule_id, member_id, max_uses, min_spend, starts_at, expires_at,
                        created_at) VALUES (?, ?, ?, 1, 0, ?, ?, ?) ON CONFLICT (code) DO NOTHING""",
                 (code, rule_id, reward.beneficiary, at, expires, at))
    return code


def on_return(conn: sqlite3.Connection, sale_id: str, at: str) -> int:
    """In a return's transaction (after the return row is written): reverse the referral reward this
    purchase gave, once it keeps less than the policy's minimum. Returns the points taken back."""
    rows = conn.execute("""SELECT member_id, level, beneficiary_id, kind, points, coupon_code FROM referral_rewards
                           WHERE sale_id = ? AND status = 'granted' ORDER BY level""", (sale_id,)).fetchall()
    if not rows or _paired(conn):
        return 0
    sale = conn.execute("SELECT total FROM sales WHERE sale_id = ?", (sale_id,)).fetchone()
    refunded = conn.execute("SELECT coalesce(sum(refund_total), 0) FROM returns WHERE sale_id = ?",
                            (sale_id,)).fetchone()[0]
    if sale is None or rules.keeps_reward(load_policy(conn).referrals, int(sale[0]), int(refunded)):
        return 0
    taken_total = 0
    for member_id, level, beneficiary, kind, points, coupon in rows:
        if kind == "points":
            available, _ = member_ledger.balances(conn, beneficiary)
            taken, shortfall = rules.take_back(int(points), available)
            if taken:
                member_ledger.post(conn, "points", beneficiary, -taken, "referral_reverse", sale_id, SYSTEM, at)
            taken_total += taken
        else:
            used = conn.execute("SELECT count(*) FROM coupon_redemptions WHERE code = ?", (coupon,)).fetchone()[0]
            taken, shortfall = (0, 1) if used else (1, 0)
            if not used:  # an unused reward coupon ends now
                conn.execute("UPDATE coupons SET expires_at = ? WHERE code = ?", (at, coupon))
        conn.execute("""UPDATE referral_rewards SET status = 'reversed', taken_back = ?, shortfall = ?, reversed_at = ?
                        WHERE member_id = ? AND level = ?""", (taken, shortfall, at, member_id, level))
    conn.execute("UPDATE referrals SET status = 'reversed' WHERE member_id = ?", (rows[0][0],))
    chain.append(conn, "referral_reverse", sale_id, at, {"member_id": rows[0][0], "points_taken": taken_total})
    return taken_total


# -- HQ's word (a paired hub) ------------------------------------------------------------------------------------

def put_referral(conn: sqlite3.Connection, body: ReferralPut) -> None:
    """Apply a `referral` feed entry: HQ's state of B's referral and its rewards (history only: points
    granted at HQ are HQ's, not this store's escrow)."""
    conn.execute(
        """INSERT INTO referrals (member_id, referrer_id, code, store_id, at, status, sale_id, decided_by, reason)
           VALUES (?, ?, ?, ?, ?, ?, ?, 'hq', ?)
           ON CONFLICT (member_id) DO UPDATE SET referrer_id = excluded.referrer_id, status = excluded.status,
               sale_id = excluded.sale_id, decided_by = 'hq', reason = excluded.reason""",
        (body.member_id, body.referrer_id, body.code, body.store_id, body.at, body.status, body.sale_id, body.reason))
    for r in body.rewards:
        conn.execute(
            """INSERT INTO referral_rewards (member_id, level, beneficiary_id, sale_id, kind, points, coupon_code,
                   status, taken_back, shortfall, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (member_id, level) DO UPDATE SET status = excluded.status,
                   taken_back = excluded.taken_back, shortfall = excluded.shortfall""",
            (body.member_id, r.level, r.beneficiary_id, r.sale_id, r.kind, r.points, r.coupon_code, r.status,
             r.taken_back, r.shortfall, r.at))


# -- reading --------------------------------------------------------------------------------------------------

_LINK = "SELECT member_id, referrer_id, status, at, store_id, sale_id, reason FROM referrals"
_REWARD = ("SELECT member_id, level, beneficiary_id, sale_id, kind, points, coupon_code, status, taken_back, "
           "shortfall, at FROM referral_rewards")


def view(conn: sqlite3.Connection, member_id: str, limit: int = 50) -> ReferralView:
    by = conn.execute(_LINK + " WHERE member_id = ?", (member_id,)).fetchone()
    referred = conn.execute(_LINK + " WHERE referrer_id = ? ORDER BY at DESC LIMIT ?", (member_id, limit)).fetchall()
    earned = conn.execute(_REWARD + " WHERE beneficiary_id = ? ORDER BY at DESC LIMIT ?", (member_id, limit)).fetchall()
    given = conn.execute(_REWARD + " WHERE member_id = ? ORDER BY level", (member_id,)).fetchall()
    return ReferralView(
        member_id=member_id, referral_code=code_of(conn, member_id) or rules.code_for(member_id),
        referred_by=ReferralLink(*by) if by else None, referred=[ReferralLink(*r) for r in referred],
        rewards_earned=[RewardRow(*r) for r in earned], rewards_given=[RewardRow(*r) for r in given])
