"""Campaigns at a standalone hub, over its SQLite (the generator: edge/engage/campaign_rules.py; HQ runs the
same generator over its own tables for a paired chain, hq_sync/server/service/engage.py).

`run` (writer, one transaction) gathers the facts, generates the day's notices and writes one outbox
row per (notice, channel) — `INSERT OR IGNORE` on the unique (member, campaign, period, channel), so a
rerun adds nothing — plus the birthday coupons of the notices that are new. `deliver` then hands the
queued rows to their channels outside the transaction (edge/engage/channels.py) and `record` stores
the outcomes. The inbox (`inbox`) is the delivered inbox rows, plus what a paired hub fetched from HQ.
"""

from __future__ import annotations

import datetime
import sqlite3
import uuid

import msgspec

from edge.engage import campaign_rules as rules
from edge.engage.channels import Channel, Delivery, Outgoing
from edge.engage.coupon_rules import ensure_coupon_rule
from edge.engage.policy import EngagePolicy
from edge.members import pii
from edge.pricing.price_lists import utc_text

# The days a campaign run may be asked for (`POST .../campaigns/run` `day`): coupons' start and end times
# are that day in the chain's time zone, which before 1901 is local mean time, an offset no RFC 3339 has.
FIRST_DAY, LAST_DAY = datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)


def check_day(day: datetime.date | None) -> None:
    """Refuse (ValueError, a 400 when a body decodes) a campaign day outside FIRST_DAY..LAST_DAY."""
    if day is not None and not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"day must be between {FIRST_DAY} and {LAST_DAY}")


class RunResult(msgspec.Struct, frozen=True):
    day: str
    notices: int  # notices due today (new or not)
    created: dict[str, int]  # new outbox rows per campaign
    coupons: int  # birthday coupons created


class InboxMessage(msgspec.Struct, frozen=True):
    id: str
    member_id: str
    campaign: str
    payload: dict[str, str]
    created_at: str


def _members(conn: sqlite3.Connection) -> list[rules.MemberFacts]:
    """Each member's birth month and last active day. The birthday is read here and only here (the one
    place to change when it is stored encrypted); only its month leaves this function."""
    rows = conn.execute(
        """SELECT m.member_id, m.pii, m.created_at,
                  (SELECT max(s.created_at) FROM sales s WHERE s.member_id = m.member_id)
           FROM members m ORDER BY m.member_id""").fetchall()
    k = pii.keys(conn)  # sealed (docs/privacy.md): opened here, and only the month leaves
    return [rules.MemberFacts(r[0], rules.birth_month(k.open_personal(r[0], r[1]).birthday), str(r[3] or r[2])[:10])
            for r in rows]


def _tier_changes(conn: sqlite3.Connection, since: str) -> list[rules.TierChange]:
    """Tier changes recorded by the tier rules (`member_tier_changes`, branch member-rules); none while
    that table does not exist."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'member_tier_changes'").fetchone() \
            is None:
        return []
    columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(tiers)")}
    by = "tier_rank" if "tier_rank" in columns else "min_points"  # the tier rules' rank, where they are merged
    rank = {str(r[0]): int(r[1]) for r in conn.execute(f"SELECT tier, {by} FROM tiers")}
    return [rules.TierChange(r[0], r[1], r[2], r[3], rank.get(r[2], 0) > rank.get(r[1], 0)) for r in conn.execute(
        "SELECT member_id, from_tier, to_tier, at FROM member_tier_changes WHERE at >= ? ORDER BY at", (since,))]


def _expiring(conn: sqlite3.Connection, start: str, end: str) -> list[rules.ExpiringCoupon]:
    return [rules.ExpiringCoupon(r[0], r[1], r[2]) for r in conn.execute(
        """SELECT c.code, c.member_id, c.expires_at FROM coupons c
           WHERE c.member_id IS NOT NULL AND c.expires_at >= ? AND c.expires_at < ?
             AND (SELECT count(*) FROM coupon_redemptions r WHERE r.code = c.code) < c.max_uses
           ORDER BY c.code""", (start, end))]


def _tier_names(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    return {str(r[0]): (str(r[1]), str(r[2])) for r in conn.execute("SELECT tier, name_zh, name_en FROM tiers")}


def run(conn: sqlite3.Connection, today: datetime.date, at: str, policy: EngagePolicy) -> RunResult:
    """Generate the campaigns due on `today` into the outbox (writer; idempotent per member and period)."""
    c = policy.campaigns
    offset = at[-6:] if len(at) >= 6 and at[-6] in "+-" else "+00:00"
    since = (today - datetime.timedelta(days=c.tier_up_lookback_days)).isoformat()
    until = (today + datetime.timedelta(days=c.expiry_days + 1)).isoformat()
    notices = rules.generate(today, c, _members(conn), _tier_changes(conn, since),
                             _expiring(conn, today.isoformat(), until), offset, _tier_names(conn))
    created: dict[str, int] = {}
    coupons = 0
    for notice in notices:
        payload = msgspec.json.encode(notice.payload).decode()
        new = 0
        for channel in c.channels:
            new += conn.execute(
                """INSERT OR IGNORE INTO notifications (id, member_id, campaign, period, channel, payload, created_at,
                       status) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued')""",
                (f"N-{uuid.uuid4()}", notice.member_id, notice.campaign, notice.period, channel, payload, at)).rowcount
        if new:
            created[notice.campaign] = created.get(notice.campaign, 0) + new
        if new and notice.coupon is not None:
            coupons += _coupon(conn, notice.coupon, c.birthday_off, at)
    return RunResult(day=today.isoformat(), notices=len(notices), created=created, coupons=coupons)


def _coupon(conn: sqlite3.Connection, spec: rules.CouponSpec, off: int, at: str) -> int:
    ensure_coupon_rule(conn, spec.rule_id, "生日券", "Birthday coupon", off, at)
    return conn.execute(
        """INSERT OR IGNORE INTO coupons (code, rule_id, member_id, max_uses, min_spend, starts_at, expires_at,
               created_at) VALUES (?, ?, ?, 1, 0, ?, ?, ?)""",
        (spec.code, spec.rule_id, spec.member_id, _utc(spec.starts_at), _utc(spec.expires_at), at)).rowcount


def _utc(text: str) -> str:
    """Coupons keep their times in UTC (edge/pricing/price_lists.utc_text)."""
    return utc_text(datetime.datetime.fromisoformat(text))


# -- delivery ---------------------------------------------------------------------------------------------------

def queued(conn: sqlite3.Connection, limit: int = 500) -> list[tuple[str, Outgoing]]:
    return [(str(r[1]), Outgoing(r[0], r[2], r[3], msgspec.json.decode(r[4], type=dict[str, str])))
            for r in conn.execute("""SELECT id, channel, member_id, campaign, payload FROM notifications
                                     WHERE status = 'queued' ORDER BY created_at, id LIMIT ?""", (limit,))]


def deliver(rows: list[tuple[str, Outgoing]], channels: dict[str, Channel]) -> list[tuple[str, Delivery]]:
    """Hand each queued row to its channel (may do I/O: call outside the writer)."""
    out = []
    for channel, note in rows:
        handler = channels.get(channel)
        out.append((note.notification_id, handler.deliver(note) if handler is not None
                    else Delivery("failed", f"no channel {channel}")))
    return out


def record(conn: sqlite3.Connection, results: list[tuple[str, Delivery]], at: str) -> None:
    conn.executemany(
        "UPDATE notifications SET status = ?, error = ?, sent_at = ? WHERE id = ? AND status = 'queued'",
        [(d.status, d.error[:300], at if d.status in ("delivered", "sent") else None, nid) for nid, d in results])


# -- the inbox ---------------------------------------------------------------------------------------------------

def inbox(conn: sqlite3.Connection, member_id: str, limit: int = 50) -> list[InboxMessage]:
    """The member's inbox: messages generated here and delivered, and those fetched from HQ, newest first."""
    rows = conn.execute(
        """SELECT id, member_id, campaign, payload, created_at FROM notifications
           WHERE member_id = ? AND channel = 'inbox' AND status = 'delivered'
           UNION ALL
           SELECT id, member_id, campaign, payload, created_at FROM member_inbox WHERE member_id = ?
           ORDER BY created_at DESC, id LIMIT ?""", (member_id, member_id, limit)).fetchall()
    return [InboxMessage(r[0], r[1], r[2], msgspec.json.decode(r[3], type=dict[str, str]), r[4]) for r in rows]


def cache_inbox(conn: sqlite3.Connection, messages: list[InboxMessage], at: str) -> None:
    """Keep what HQ answered for a member's inbox, for when HQ cannot be reached (writer)."""
    conn.executemany(
        """INSERT INTO member_inbox (id, member_id, campaign, payload, created_at, fetched_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET fetched_at = excluded.fetched_at""",
        [(m.id, m.member_id, m.campaign, msgspec.json.encode(m.payload).decode(), m.created_at, at) for m in messages])
