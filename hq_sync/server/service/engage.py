"""Referrals and campaigns at HQ (docs/members.md "Referrals", "Campaigns"): the same pure rules as a
standalone hub (edge/engage/referral_rules.py, campaign_rules.py) over HQ's tables.

Referrals. A store's `referral` delta records B → A once per member (`hq_referrals`; a self-referral
or a cycle chain-wide is recorded `refused` with the reason, never applied). When B's sale delta is
ingested — from any store, in the batch's transaction — and B's referral is pending, HQ grants the
rewards: points into each beneficiary's HQ ledger (kind `referral`; unallocated, no store's escrow),
or a chain coupon. `hq_referral_rewards` has one row per (member, level): exactly once chain-wide,
whatever is resent. A return of that sale leaving it below the minimum takes the points back as far as
they are unallocated (a `referral_reverse` entry; the rest is the recorded shortfall: never a
negative balance), or ends the coupon if unused. Every change of a referral goes to every store as a
`referral` feed entry (member history). Sales from before a store's pairing (seq ≤ base_seq) were
decided by the store itself: HQ marks the referral rewarded without granting again.

Campaigns. `run_campaigns` generates the day's notices into `hq_notifications` (unique per member,
campaign, period and channel: a rerun adds nothing) and issues the birthday coupons as chain coupons;
`deliver_queued` hands queued rows to the channels. Hubs read a member's inbox from HQ
(`GET /hq/v1/sync/members/{id}/inbox`) and cache it.
"""

from __future__ import annotations

import datetime
import os
import uuid
import zoneinfo
from typing import Any

import msgspec

from edge.engage import campaign_rules, referral_rules
from edge.engage.channels import Delivery, Outgoing, channels_for
from edge.engage.coupon_rules import coupon_rule_text
from edge.engage.policy import EngagePolicy, ReferralPolicy, decode_policy, keep_secrets, shown
from edge.pricing.price_lists import utc_text
from hq_sync.protocol import Delta, ReferralDelta, ReturnDelta, SaleDelta
from hq_sync.server.service import pii
from hq_sync.server.service.access import Principal, require
from hq_sync.server.service.audit import audit
from hq_sync.server.service.errors import HqError
from hq_sync.server.service.feed import append_feed
from hq_sync.server.service.members import member_rows
from hq_sync.server.storage.db import HqDb, Tx
from hq_sync.wire import CouponPut, MembersPut, PromotionPut, ReferralPut, ReferralReward

POLICY_KEY = "engage_policy"


def timezone() -> zoneinfo.ZoneInfo:
    """The chain's local time for campaign days (`BACKROOM_HQ_TIMEZONE`, default Asia/Shanghai)."""
    return zoneinfo.ZoneInfo(os.environ.get("BACKROOM_HQ_TIMEZONE", "Asia/Shanghai"))


# -- the policy ----------------------------------------------------------------------------------------------

def load_policy(tx: Tx) -> EngagePolicy:
    row = tx.one("SELECT value FROM hq_meta WHERE key = ?", (POLICY_KEY,))
    return decode_policy(row[0] if row else None)


def read_policy(db: HqDb) -> EngagePolicy:
    with db.read() as tx:
        return load_policy(tx)


def put_policy(db: HqDb, principal: Principal, body: bytes) -> EngagePolicy:
    require(principal, "campaigns.manage")
    if not body.strip():
        raise HqError(400, "invalid_field", "the request needs a JSON body (the whole policy)")
    try:
        new = decode_policy(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise HqError(400, "invalid_field", str(exc)[:300]) from None
    with db.write() as tx:
        old = load_policy(tx)
        policy = keep_secrets(new, old)
        audit(tx, principal, "engage.policy", "engage_policy", shown(old), shown(policy))
        tx.run("""INSERT INTO hq_meta (key, value) VALUES (?, ?)
                  ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
               (POLICY_KEY, msgspec.json.encode(policy).decode()))
    return policy


def _key(tx: Tx) -> bytes:
    row = tx.one("SELECT private_key FROM hq_keys WHERE id = 1")
    assert row is not None, "HQ has no key"
    return bytes(row[0])


# -- referrals at ingest -------------------------------------------------------------------------------------

def _referrer_lookup(tx: Tx) -> Any:
    def lookup(member_id: str) -> str | None:
        row = tx.one("SELECT referrer_id FROM hq_referrals WHERE member_id = ? AND status <> 'refused'", (member_id,))
        return str(row[0]) if row else None
    return lookup


def apply(tx: Tx, store_id: str, items: list[tuple[Delta, bool]], at: str) -> None:
    """In an ingest's transaction, after its rows are written: referrals, first purchases and returns
    (`paired`: the row is after the store's pairing point)."""
    if not items:
        return
    # Two reads for the whole batch find the few rows that concern referrals (most sales do not).
    buyers = sorted({d.member_id for d, _ in items if isinstance(d, SaleDelta) and d.member_id is not None})
    returned = sorted({d.sale_id for d, paired in items if isinstance(d, ReturnDelta) and paired})
    pending = set(_in(tx, "SELECT member_id FROM hq_referrals WHERE status = 'pending' AND member_id IN ({})", buyers))
    rewarding = set(_in(tx, "SELECT sale_id FROM hq_referral_rewards WHERE status = 'granted' AND sale_id IN ({})",
                        returned))
    if not pending and not rewarding and not any(isinstance(d, ReferralDelta) for d, _ in items):
        return
    policy = load_policy(tx).referrals
    changed: list[str] = []
    for delta, paired in items:
        match delta:
            case ReferralDelta():
                if _record(tx, store_id, delta):
                    changed.append(delta.member_id)
                    pending.add(delta.member_id)
            case SaleDelta(member_id=member_id) if member_id is not None and member_id in pending:
                if _on_sale(tx, policy, delta, member_id, paired, at):
                    changed.append(member_id)
                    pending.discard(member_id)
                    rewarding.add(delta.sale_id)
            case ReturnDelta() if paired and delta.sale_id in rewarding:
                member = _on_return(tx, policy, delta.sale_id, at)
                if member is not None:
                    changed.append(member)
    if changed:
        key = _key(tx)
        for member_id in dict.fromkeys(changed):
            append_feed(tx, key, "*", referral_put(tx, member_id), at)


def _in(tx: Tx, sql: str, keys: list[str]) -> list[str]:
    out: list[str] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        out.extend(str(r[0]) for r in tx.all(sql.format(",".join("?" * len(chunk))), chunk))
    return out


def _record(tx: Tx, store_id: str, d: ReferralDelta) -> bool:
    if tx.one("SELECT 1 FROM hq_referrals WHERE member_id = ?", (d.member_id,)) is not None:
        return False  # the first referral recorded stands
    reason = ""
    if tx.one("SELECT 1 FROM hq_members WHERE member_id = ?", (d.referrer_id,)) is None:
        reason = f"unknown referrer {d.referrer_id}"
    else:
        why = referral_rules.refusal(d.member_id, d.referrer_id, _referrer_lookup(tx))
        if why is not None:
            reason = why
    tx.run("""INSERT INTO hq_referrals (member_id, referrer_id, code, store_id, at, status, reason)
              VALUES (?, ?, ?, ?, ?, ?, ?)""",
           (d.member_id, d.referrer_id, d.code, store_id, d.at, "refused" if reason else "pending", reason))
    return True


def _on_sale(tx: Tx, policy: ReferralPolicy, sale: SaleDelta, member_id: str, paired: bool, at: str) -> bool:
    # Two stores' batches may carry B's first purchases at once (PostgreSQL): the row lock makes the second
    # read the first's outcome; the (member, level) key would refuse a second grant anyway.
    tx.lock("hq_referrals", "member_id", [member_id])
    row = tx.one("SELECT status FROM hq_referrals WHERE member_id = ?", (member_id,))
    if row is None or row[0] != "pending":
        return False
    rewards = referral_rules.first_purchase_rewards(
        policy, referral_rules.upline(member_id, _referrer_lookup(tx), policy.max_depth), sale.total)
    if not rewards:
        return False
    if not paired:  # the store decided this itself before it paired (its holdings came to HQ at pairing)
        tx.run("UPDATE hq_referrals SET status = 'rewarded', sale_id = ?, decided_by = 'store' WHERE member_id = ?",
               (sale.sale_id, member_id))
        return True
    key = None
    for reward in rewards:
        coupon = None
        if reward.kind == "coupon":
            key = key or _key(tx)
            coupon = f"REF-{member_id}-{reward.level}"[:64]
            expires = datetime.datetime.fromisoformat(sale.at) + datetime.timedelta(days=policy.coupon_valid_days)
            _ensure_rule(tx, key, policy.coupon_rule_id, "推荐有礼券", "Referral coupon", policy.coupon_off, at)
            issue_coupon(tx, key, coupon, policy.coupon_rule_id, reward.beneficiary, sale.at, expires.isoformat(), at)
        inserted = tx.run(
            """INSERT INTO hq_referral_rewards (member_id, level, beneficiary_id, sale_id, kind, points, coupon_code,
                   status, at) VALUES (?, ?, ?, ?, ?, ?, ?, 'granted', ?) ON CONFLICT (member_id, level) DO NOTHING""",
            (member_id, reward.level, reward.beneficiary, sale.sale_id, reward.kind, reward.points, coupon, at))
        if inserted and reward.kind == "points" and reward.points:
            _points(tx, reward.beneficiary, reward.points, "referral", sale.sale_id, at)
    tx.run("UPDATE hq_referrals SET status = 'rewarded', sale_id = ?, decided_by = 'hq' WHERE member_id = ?",
           (sale.sale_id, member_id))
    return True


def _points(tx: Tx, member_id: str, delta: int, kind: str, ref: str, at: str) -> None:
    tx.run("""INSERT INTO hq_member_ledger (member_id, ledger, delta, kind, store_id, ref, at)
              VALUES (?, 'points', ?, ?, NULL, ?, ?)""", (member_id, delta, kind, ref, at))
    tx.run("UPDATE hq_members SET points = points + ? WHERE member_id = ?", (delta, member_id))


def _unallocated_points(tx: Tx, member_id: str) -> int:
    row = tx.one("SELECT points FROM hq_members WHERE member_id = ?", (member_id,))
    held = tx.one("SELECT coalesce(sum(outstanding), 0) FROM hq_escrow WHERE member_id = ? AND ledger = 'points'",
                  (member_id,))
    return (int(row[0]) if row else 0) - (int(held[0]) if held else 0)


def _on_return(tx: Tx, policy: ReferralPolicy, sale_id: str, at: str) -> str | None:
    rows = tx.all("""SELECT member_id, level, beneficiary_id, kind, points, coupon_code FROM hq_referral_rewards
                     WHERE sale_id = ? AND status = 'granted' ORDER BY level""", (sale_id,))
    if not rows:
        return None
    sale = tx.one("SELECT total FROM hq_sales WHERE sale_id = ?", (sale_id,))
    refunded = tx.one("SELECT coalesce(sum(refund_total), 0) FROM hq_returns WHERE sale_id = ?", (sale_id,))
    if sale is None or referral_rules.keeps_reward(policy, int(sale[0]), int(refunded[0]) if refunded else 0):
        return None
    for member_id, level, beneficiary, kind, points, coupon in rows:
        tx.lock("hq_members", "member_id", [beneficiary])
        if kind == "points":
            taken, shortfall = referral_rules.take_back(int(points), _unallocated_points(tx, beneficiary))
            if taken:
                _points(tx, beneficiary, -taken, "referral_reverse", sale_id, at)
        else:
            used = tx.one("SELECT count(*) FROM hq_coupon_uses WHERE code = ? AND status <> 'released'", (coupon,))
            taken, shortfall = (0, 1) if used and int(used[0]) else (1, 0)
            if taken:
                _end_coupon(tx, coupon, at)
        tx.run("""UPDATE hq_referral_rewards SET status = 'reversed', taken_back = ?, shortfall = ?, reversed_at = ?
                  WHERE member_id = ? AND level = ?""", (taken, shortfall, at, member_id, level))
    tx.run("UPDATE hq_referrals SET status = 'reversed' WHERE member_id = ?", (rows[0][0],))
    return str(rows[0][0])


def referral_put(tx: Tx, member_id: str) -> ReferralPut:
    r = tx.one("SELECT member_id, referrer_id, code, status, at, store_id, sale_id, reason FROM hq_referrals "
               "WHERE member_id = ?", (member_id,))
    assert r is not None
    rewards = [ReferralReward(int(w[0]), w[1], w[2], w[3], int(w[4]), w[5], w[6], int(w[7]), int(w[8]), w[9])
               for w in tx.all("""SELECT level, beneficiary_id, sale_id, kind, points, coupon_code, status, taken_back,
                                         shortfall, at FROM hq_referral_rewards WHERE member_id = ? ORDER BY level""",
                               (member_id,))]
    return ReferralPut(member_id=r[0], referrer_id=r[1], code=r[2], status=r[3], at=r[4], store_id=r[5],
                       sale_id=r[6], reason=r[7], rewards=rewards)


def referral_view(db: HqDb, member_id: str) -> dict[str, Any]:
    with db.read() as tx:
        if tx.one("SELECT 1 FROM hq_members WHERE member_id = ?", (member_id,)) is None:
            raise HqError(404, "unknown_member", f"no member {member_id[:64]}")
        by = tx.one("SELECT member_id FROM hq_referrals WHERE member_id = ?", (member_id,))
        referred = [str(r[0]) for r in tx.all(
            "SELECT member_id FROM hq_referrals WHERE referrer_id = ? ORDER BY at DESC LIMIT 100", (member_id,))]
        earned = tx.all("""SELECT member_id, level, sale_id, kind, points, coupon_code, status, taken_back, shortfall,
                                  at FROM hq_referral_rewards WHERE beneficiary_id = ? ORDER BY at DESC LIMIT 100""",
                        (member_id,))
        return {
            "member_id": member_id, "referral_code": referral_rules.code_for(member_id),
            "referred_by": msgspec.to_builtins(referral_put(tx, member_id)) if by else None,
            "referred": [msgspec.to_builtins(referral_put(tx, m)) for m in referred],
            "rewards_earned": [{"member_id": e[0], "level": int(e[1]), "sale_id": e[2], "kind": e[3],
                                "points": int(e[4]), "coupon_code": e[5], "status": e[6], "taken_back": int(e[7]),
                                "shortfall": int(e[8]), "at": e[9]} for e in earned]}


# -- coupons the engagement issues -------------------------------------------------------------------------------

def _ensure_rule(tx: Tx, key: bytes, rule_id: str, name_zh: str, name_en: str, off: int, at: str) -> None:
    if tx.one("SELECT 1 FROM hq_promotions WHERE rule_id = ?", (rule_id,)) is not None:
        return
    text = coupon_rule_text(rule_id, name_zh, name_en, off)
    tx.run("INSERT INTO hq_promotions (rule_id, rule, active, updated_at) VALUES (?, ?, 1, ?)", (rule_id, text, at))
    append_feed(tx, key, "*", PromotionPut(rule_id=rule_id, rule=text), at)


def _coupon_body(tx: Tx, code: str) -> CouponPut:
    r = tx.one("SELECT code, rule_id, member_id, max_uses, min_spend, starts_at, expires_at, store_id FROM hq_coupons "
               "WHERE code = ?", (code,))
    assert r is not None
    return CouponPut(code=r[0], rule_id=r[1], member_id=r[2], max_uses=int(r[3]), min_spend=int(r[4]),
                     starts_at=r[5], expires_at=r[6], store=r[7])


def issue_coupon(tx: Tx, key: bytes, code: str, rule_id: str, member_id: str, starts_at: str, expires_at: str,
                 at: str) -> bool:
    """A one-use chain coupon for a member, held by the member's home store (as `POST /hq/v1/coupons`
    does). False if the code exists already."""
    home = tx.one("SELECT home_store FROM hq_members WHERE member_id = ?", (member_id,))
    store = home[0] if home and home[0] and tx.one(
        "SELECT 1 FROM hq_stores WHERE store_id = ?", (home[0],)) is not None else None
    inserted = tx.run(
        """INSERT INTO hq_coupons (code, rule_id, member_id, max_uses, min_spend, starts_at, expires_at, store_id,
               created_at) VALUES (?, ?, ?, 1, 0, ?, ?, ?, ?) ON CONFLICT (code) DO NOTHING""",
        (code, rule_id, member_id, utc_text(datetime.datetime.fromisoformat(starts_at)),
         utc_text(datetime.datetime.fromisoformat(expires_at)), store, at))
    if inserted:
        append_feed(tx, key, "*", MembersPut(members=member_rows(tx, member_id)), at)  # the stores may lack him
        append_feed(tx, key, "*", _coupon_body(tx, code), at)
    return bool(inserted)


def _end_coupon(tx: Tx, code: str, at: str) -> None:
    tx.run("UPDATE hq_coupons SET expires_at = ? WHERE code = ?",
           (utc_text(datetime.datetime.fromisoformat(at)), code))
    append_feed(tx, _key(tx), "*", _coupon_body(tx, code), at)


# -- campaigns ------------------------------------------------------------------------------------------------

def _facts(tx: Tx) -> list[campaign_rules.MemberFacts]:
    """Birth month and last active day of every member (the birthday is read here only; just its month
    leaves)."""
    last = {str(r[0]): str(r[1]) for r in tx.all(
        "SELECT member_id, max(at) FROM hq_sales WHERE member_id IS NOT NULL GROUP BY member_id")}
    return [campaign_rules.MemberFacts(r[0], campaign_rules.birth_month(pii.opened(tx, str(r[0]), r[1]).birthday),
                                       last.get(r[0], str(r[2]))[:10])
            for r in tx.all("SELECT member_id, pii, created_at FROM hq_members ORDER BY member_id")]


def _tier_changes(tx: Tx, since: str) -> list[campaign_rules.TierChange]:
    rank = {str(r[0]): int(r[1]) for r in tx.all("SELECT tier, min_points FROM hq_tiers")}
    return [campaign_rules.TierChange(r[0], r[1], r[2], r[3], rank.get(r[2], 0) > rank.get(r[1], 0)) for r in tx.all(
        "SELECT member_id, from_tier, to_tier, at FROM hq_member_tier_changes WHERE at >= ? ORDER BY at", (since,))]


def _expiring(tx: Tx, start: str, end: str) -> list[campaign_rules.ExpiringCoupon]:
    return [campaign_rules.ExpiringCoupon(r[0], r[1], r[2]) for r in tx.all(
        """SELECT c.code, c.member_id, c.expires_at FROM hq_coupons c
           WHERE c.member_id IS NOT NULL AND c.expires_at >= ? AND c.expires_at < ?
             AND (SELECT count(*) FROM hq_coupon_uses u WHERE u.code = c.code AND u.status <> 'released') < c.max_uses
           ORDER BY c.code""", (start, end))]


def run_campaigns(db: HqDb, today: datetime.date, at: str, principal: Principal | None = None) -> dict[str, Any]:
    """Generate the notices due on `today` (chain-local date) into `hq_notifications`; idempotent. Run by
    the schedule (no principal) or by a user (audited)."""
    if principal is not None:
        require(principal, "campaigns.manage")
    with db.write() as tx:
        policy = load_policy(tx)
        c = policy.campaigns
        offset = datetime.datetime.combine(today, datetime.time(12), timezone()).isoformat()[-6:]
        since = (today - datetime.timedelta(days=c.tier_up_lookback_days)).isoformat()
        until = (today + datetime.timedelta(days=c.expiry_days + 1)).isoformat()
        names = {str(r[0]): (str(r[1]), str(r[2])) for r in tx.all("SELECT tier, name_zh, name_en FROM hq_tiers")}
        notices = campaign_rules.generate(today, c, _facts(tx), _tier_changes(tx, since),
                                          _expiring(tx, today.isoformat(), until), offset, names)
        created: dict[str, int] = {}
        coupons = 0
        key = None
        for notice in notices:
            payload = msgspec.json.encode(notice.payload).decode()
            new = 0
            for channel in c.channels:
                new += tx.run(
                    """INSERT INTO hq_notifications (id, member_id, campaign, period, channel, payload, created_at,
                           status) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued')
                       ON CONFLICT (member_id, campaign, period, channel) DO NOTHING""",
                    (f"N-{uuid.uuid4()}", notice.member_id, notice.campaign, notice.period, channel, payload, at))
            if new:
                created[notice.campaign] = created.get(notice.campaign, 0) + new
            if new and notice.coupon is not None:
                key = key or _key(tx)
                spec = notice.coupon
                _ensure_rule(tx, key, spec.rule_id, "生日券", "Birthday coupon", c.birthday_off, at)
                coupons += issue_coupon(tx, key, spec.code, spec.rule_id, spec.member_id, spec.starts_at,
                                        spec.expires_at, at)
        if principal is not None:
            audit(tx, principal, "campaigns.run", f"day:{today.isoformat()}", None,
                  {"notices": len(notices), "created": created, "coupons": coupons})
    return {"day": today.isoformat(), "notices": len(notices), "created": created, "coupons": coupons}


def deliver_queued(db: HqDb, at: str, limit: int = 1000) -> dict[str, int]:
    """Hand queued notifications to their channels (outside any transaction: a channel may do I/O)."""
    with db.read() as tx:
        policy = load_policy(tx)
        rows = tx.all("""SELECT id, channel, member_id, campaign, payload FROM hq_notifications
                         WHERE status = 'queued' ORDER BY created_at, id LIMIT ?""", (limit,))
    channels = channels_for(policy)
    results: list[tuple[str, Delivery]] = []
    for nid, channel, member_id, campaign, payload in rows:
        handler = channels.get(channel)
        note = Outgoing(nid, member_id, campaign, msgspec.json.decode(payload, type=dict[str, str]))
        results.append((nid, handler.deliver(note) if handler else Delivery("failed", f"no channel {channel}")))
    with db.write() as tx:
        tx.many("UPDATE hq_notifications SET status = ?, error = ?, sent_at = ? WHERE id = ? AND status = 'queued'",
                [(d.status, d.error[:300], at if d.status in ("delivered", "sent") else None, nid)
                 for nid, d in results])
    counts: dict[str, int] = {}
    for _, d in results:
        counts[d.status] = counts.get(d.status, 0) + 1
    return counts


def inbox(db: HqDb, member_id: str, limit: int = 50) -> list[dict[str, Any]]:
    with db.read() as tx:
        rows = tx.all("""SELECT id, member_id, campaign, payload, created_at FROM hq_notifications
                         WHERE member_id = ? AND channel = 'inbox' AND status = 'delivered'
                         ORDER BY created_at DESC, id LIMIT ?""", (member_id, limit))
    return [{"id": r[0], "member_id": r[1], "campaign": r[2], "payload": msgspec.json.decode(r[3]),
             "created_at": r[4]} for r in rows]


def notifications(db: HqDb, status: str | None, member_id: str | None, limit: int) -> list[dict[str, Any]]:
    sql = "SELECT id, member_id, campaign, period, channel, status, created_at, sent_at, error FROM hq_notifications"
    where, args = [], []
    if status:
        where.append("status = ?")
        args.append(status)
    if member_id:
        where.append("member_id = ?")
        args.append(member_id)
    if where:
        sql += " WHERE " + " AND ".join(where)
    with db.read() as tx:
        rows = tx.all(sql + " ORDER BY created_at DESC, id LIMIT ?", (*args, limit))
    keys = ("id", "member_id", "campaign", "period", "channel", "status", "created_at", "sent_at", "error")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def today_local() -> datetime.date:
    return datetime.datetime.now(timezone()).date()


def last_run_day(db: HqDb) -> str | None:
    with db.read() as tx:
        row = tx.one("SELECT value FROM hq_meta WHERE key = 'campaigns_last_day'")
    return str(row[0]) if row else None


def mark_run_day(db: HqDb, day: str) -> None:
    with db.write() as tx:
        tx.run("""INSERT INTO hq_meta (key, value) VALUES ('campaigns_last_day', ?)
                  ON CONFLICT (key) DO UPDATE SET value = excluded.value""", (day,))
