"""The hub's tiers: definitions (benefits and rules), a member's window figures from this store's sales,
applying `tiering.evaluate`, and the tier history (`member_tier_changes`).

A standalone hub (not paired with HQ) runs the rules itself: at each member sale (same transaction)
and in the daily pass (edge/members/review.py). A paired hub does not evaluate: HQ does, chain-wide,
and the new tier arrives in the feed (hq_sync/hub_state.py records the change here with reason `hq`).
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Sequence

from edge.members.tiering import (
    DEFAULT_REVIEW_MONTHS,
    DEFAULT_WINDOW_MONTHS,
    Decision,
    Figures,
    TierChange,
    TierDef,
    TierRule,
    TierSettings,
    evaluate,
    window_start,
)
from edge.promotions.repository import bump_version

_CHUNK = 500


def is_standalone(conn: sqlite3.Connection) -> bool:
    """Not paired with HQ: this hub runs the tier and tag rules itself."""
    return conn.execute("SELECT 1 FROM sync_state WHERE id = 1").fetchone() is None


def _setting(conn: sqlite3.Connection, key: str, default: int) -> int:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else default


def read_settings(conn: sqlite3.Connection) -> TierSettings:
    tiers = [TierDef(tier=r[0], name_zh=r[1], name_en=r[2], discount_bp=int(r[3]), points_multiplier_pct=int(r[4]),
                     rank=int(r[5]), metric=r[6], threshold=int(r[7])) for r in conn.execute(
        """SELECT tier, name_zh, name_en, discount_bp, points_multiplier_pct, tier_rank, metric, threshold
           FROM tiers ORDER BY tier_rank, tier""")]
    return TierSettings(tiers=tiers, window_months=_setting(conn, "tier_window_months", DEFAULT_WINDOW_MONTHS),
                        review_months=_setting(conn, "tier_review_months", DEFAULT_REVIEW_MONTHS))


def rules(conn: sqlite3.Connection) -> list[TierRule]:
    return [TierRule(r[0], int(r[1]), r[2], int(r[3]))
            for r in conn.execute("SELECT tier, tier_rank, metric, threshold FROM tiers")]


def existing_tiers(conn: sqlite3.Connection) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT tier FROM tiers")]


def upsert_tiers(conn: sqlite3.Connection, tiers: Sequence[TierDef]) -> None:
    """Insert or update tiers (benefits and rule); the pricing rule book is rebuilt (tier discounts)."""
    conn.executemany(
        """INSERT INTO tiers (tier, name_zh, name_en, discount_bp, points_multiplier_pct, min_points, tier_rank, metric,
               threshold) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (tier) DO UPDATE SET name_zh = excluded.name_zh, name_en = excluded.name_en,
               discount_bp = excluded.discount_bp, points_multiplier_pct = excluded.points_multiplier_pct,
               min_points = excluded.min_points, tier_rank = excluded.tier_rank, metric = excluded.metric,
               threshold = excluded.threshold""",
        [(t.tier, t.name_zh, t.name_en, t.discount_bp, t.points_multiplier_pct,
          t.threshold if t.metric == "points" else 0, t.rank, t.metric, t.threshold) for t in tiers])
    if tiers:
        bump_version(conn)


def put_settings(conn: sqlite3.Connection, settings: TierSettings) -> None:
    upsert_tiers(conn, settings.tiers)
    conn.executemany("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                     [("tier_window_months", str(settings.window_months)),
                      ("tier_review_months", str(settings.review_months))])


# -- figures --------------------------------------------------------------------------------------------------

def figures(conn: sqlite3.Connection, today: datetime.date, window_months: int,
            member_ids: Sequence[str] | None = None) -> dict[str, Figures]:
    """Each member's spend (sales less refunds), points earned (less reversed) and visits over the
    rolling window ending today, from this store's sales and returns."""
    start = window_start(today, window_months).isoformat()
    end = (today + datetime.timedelta(days=1)).isoformat()
    out: dict[str, list[int]] = {}
    groups = [list(member_ids[i:i + _CHUNK]) for i in range(0, len(member_ids), _CHUNK)] if member_ids is not None \
        else [None]
    for chunk in groups:
        where, args = ("", []) if chunk is None else (
            f" AND s.member_id IN ({','.join('?' * len(chunk))})", list(chunk))
        for member_id, spend, points, visits in conn.execute(
                f"""SELECT s.member_id, sum(s.total), sum(s.points_earned), count(*) FROM sales s
                    WHERE s.member_id IS NOT NULL AND s.created_at >= ? AND s.created_at < ?{where}
                    GROUP BY s.member_id""", [start, end, *args]):
            out[member_id] = [int(spend), int(points), int(visits)]
        for member_id, refunded, reversed_ in conn.execute(
                f"""SELECT s.member_id, sum(r.refund_total), sum(r.points_reversed) FROM returns r
                    JOIN sales s ON s.sale_id = r.sale_id
                    WHERE s.member_id IS NOT NULL AND r.created_at >= ? AND r.created_at < ?{where}
                    GROUP BY s.member_id""", [start, end, *args]):
            cell = out.setdefault(member_id, [0, 0, 0])
            cell[0] -= int(refunded)
            cell[1] -= int(reversed_)
    return {m: Figures(spend=max(v[0], 0), points=max(v[1], 0), visits=v[2]) for m, v in out.items()}


# -- applying decisions ---------------------------------------------------------------------------------------

def record_change(conn: sqlite3.Connection, member_id: str, from_tier: str, to_tier: str, at: str,
                  reason: str) -> None:
    conn.execute("INSERT INTO member_tier_changes (member_id, from_tier, to_tier, at, reason) VALUES (?, ?, ?, ?, ?)",
                 (member_id, from_tier, to_tier, at, reason))


def apply(conn: sqlite3.Connection, member_id: str, decision: Decision, at: str) -> bool:
    """Write a decision; True if the tier changed (recorded in the history)."""
    conn.execute("UPDATE members SET tier = ?, tier_review_on = ? WHERE member_id = ?",
                 (decision.tier, decision.review_on.isoformat(), member_id))
    if decision.changed:
        record_change(conn, member_id, decision.from_tier, decision.tier, at, decision.reason)
    return decision.changed


def review(conn: sqlite3.Connection, today: datetime.date, at: str,
           member_ids: Sequence[str] | None = None) -> list[TierChange]:
    """Evaluate the members (all of them without `member_ids`) and write what changed. Returns the
    tier changes made."""
    settings = read_settings(conn)
    tier_rules = [t.rule for t in settings.tiers]
    if not tier_rules:
        return []
    figs = figures(conn, today, settings.window_months, member_ids)
    sql = "SELECT member_id, tier, tier_review_on FROM members"
    if member_ids is not None:
        rows = []
        for i in range(0, len(member_ids), _CHUNK):
            chunk = list(member_ids[i:i + _CHUNK])
            rows.extend(conn.execute(sql + f" WHERE member_id IN ({','.join('?' * len(chunk))})", chunk).fetchall())
    else:
        rows = conn.execute(sql).fetchall()
    before: int | None = None  # the history's head, read only when there is something to write
    for member_id, tier, review_on in rows:
        current_review = datetime.date.fromisoformat(review_on) if review_on else None
        decision = evaluate(tier_rules, figs.get(member_id, Figures()), tier, current_review, today,
                            settings.review_months)
        if decision.changed or decision.review_on != current_review:
            if before is None:
                before = last_change_id(conn)
            apply(conn, member_id, decision, at)
    return [] if before is None else changes(conn, after=before)


def after_sale(conn: sqlite3.Connection, member_id: str | None, today: str, at: str) -> list[TierChange]:
    """A standalone hub's upgrade at sale commit (same transaction as the sale)."""
    if member_id is None or not is_standalone(conn):
        return []
    return review(conn, datetime.date.fromisoformat(today), at, [member_id])


# -- the history --------------------------------------------------------------------------------------------------

def last_change_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(change_id), 0) FROM member_tier_changes").fetchone()[0])


def changes(conn: sqlite3.Connection, *, after: int = 0, member_id: str | None = None,
            limit: int = 1000) -> list[TierChange]:
    """Tier changes after `change_id` `after` (oldest first), of one member or all: what a tier-up
    campaign reads (remember the last change_id seen)."""
    sql = "SELECT change_id, member_id, from_tier, to_tier, at, reason FROM member_tier_changes WHERE change_id > ?"
    args: list[object] = [after]
    if member_id is not None:
        sql += " AND member_id = ?"
        args.append(member_id)
    return [TierChange(*r) for r in conn.execute(sql + " ORDER BY change_id LIMIT ?", [*args, limit])]


def member_history(conn: sqlite3.Connection, member_id: str, limit: int = 20) -> list[TierChange]:
    """A member's tier changes, newest first (the member page)."""
    return [TierChange(*r) for r in conn.execute(
        """SELECT change_id, member_id, from_tier, to_tier, at, reason FROM member_tier_changes
           WHERE member_id = ? ORDER BY change_id DESC LIMIT ?""", (member_id, limit))]
